//! Forms: the fields a page posted, and what a refused form shows again (what was typed, each
//! field's error beside it, in the words of the API's field violations).

use axum::{
    extract::{FromRequest, Request},
    http::StatusCode,
    response::Response,
};
use tonic_types::StatusExt;

use crate::{Web, i18n::Lang, lang_of, pages};

/// Most fields a form may carry.
pub const MAX_FIELDS: usize = 256;

/// The fields of a posted form, in order (a name may repeat: checkboxes).
#[derive(Debug, Clone, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// Whether a checkbox `name` was ticked.
    pub fn ticked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl FromRequest<Web> for Fields {
    type Rejection = Response;

    async fn from_request(req: Request, web: &Web) -> Result<Self, Self::Rejection> {
        let lang = lang_of(req.headers());
        let form = axum::Form::<Vec<(String, String)>>::from_request(req, web)
            .await
            .map_err(|e| pages::failure(lang, e.status(), lang.t("error.bad_form")))?;
        if form.0.len() > MAX_FIELDS {
            return Err(pages::failure(
                lang,
                StatusCode::PAYLOAD_TOO_LARGE,
                lang.t("error.bad_form"),
            ));
        }
        Ok(Fields(form.0))
    }
}

/// A form as a page shows it: the values to fill in, the errors to show, a message above it,
/// and the idempotency key that makes a second submission of the same form a replay.
#[derive(Debug, Clone, Default)]
pub struct FormState {
    values: Vec<(String, String)>,
    errors: Vec<(String, String)>,
    pub message: Option<String>,
    pub key: String,
}

impl FormState {
    /// An empty form, with a new idempotency key.
    pub fn fresh() -> Self {
        Self {
            key: uuid::Uuid::now_v7().to_string(),
            ..Self::default()
        }
    }

    /// An empty form with these initial values.
    pub fn with(values: &[(&str, String)]) -> Self {
        Self {
            values: values.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            ..Self::fresh()
        }
    }

    /// A posted form refused with `status`: what was typed, and its errors by field.
    pub fn refused(fields: &Fields, status: &tonic::Status, lang: Lang) -> Self {
        let mut state = Self {
            values: fields.pairs().to_vec(),
            key: fields.get("idempotency_key").to_owned(),
            ..Self::default()
        };
        if state.key.is_empty() {
            state.key = uuid::Uuid::now_v7().to_string();
        }
        let violations = violations(status);
        if violations.is_empty() {
            state.message = Some(pages::explain(lang, status));
        } else {
            state.message = Some(lang.t("form.refused").to_owned());
            state.errors = violations;
        }
        state
    }

    /// Errors named `step.field` (`grant.valid_from`) renamed `field`, for a form whose step is
    /// a select and whose fields are shared by every step.
    pub fn unprefix(&mut self) {
        for (field, _) in &mut self.errors {
            if let Some((_, rest)) = field.split_once('.') {
                *field = rest.to_owned();
            }
        }
    }

    /// The value of `name` to show.
    pub fn get(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether `name` has `value` (a selected option, a ticked box).
    pub fn is(&self, name: &str, value: &str) -> bool {
        self.values.iter().any(|(k, v)| k == name && v == value)
    }

    /// The error of field `name` (a field path of the API: `identity.last_name`).
    pub fn error(&self, name: &str) -> Option<&str> {
        self.errors.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every error, by field, for the summary above the form.
    pub fn errors(&self) -> &[(String, String)] {
        &self.errors
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// The field violations of a refusal: `(field path, description)`.
pub fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|f| (f.field, f.description))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_form_keeps_what_was_typed_and_names_each_field() {
        let fields = Fields::new(vec![
            ("idempotency_key".into(), "k1".into()),
            ("identity.last_name".into(), " Martin ".into()),
            ("sex".into(), "FEMALE".into()),
        ]);
        let mut v = observatory_domain::Violations::new();
        v.push("identity.birth_date", "REQUIRED", "is required");
        let status = observatory_grpc::error::invalid(&v);
        let state = FormState::refused(&fields, &status, Lang::Fr);
        assert_eq!(state.get("identity.last_name"), " Martin ");
        assert!(state.is("sex", "FEMALE"));
        assert_eq!(state.key, "k1", "the same key: a second submission is a replay");
        assert_eq!(state.error("identity.birth_date"), Some("is required"));
        assert_eq!(fields.get("identity.last_name"), "Martin");
    }
}
