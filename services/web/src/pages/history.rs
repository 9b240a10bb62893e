//! A record's history: every version, who wrote it, when, why, and what it changed.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use observatory_app::registry as ops;
use observatory_domain::model::RecordKind;
use observatory_proto::v1 as pb;
use observatory_store::Record;

use super::{Page, refused, render};
use crate::{Signed, Web, op};

/// One version, as the history lists it.
pub struct Version {
    pub version: i64,
    pub recorded_at: String,
    pub recorded_by: String,
    pub reason: String,
    pub request_id: String,
    /// `(field, before, after)` of every field this version changed (all of them for the
    /// first).
    pub changes: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "history.html")]
struct History {
    page: Page,
    kind: String,
    id: String,
    back: Option<String>,
    versions: Vec<Version>,
}

fn body(r: &Record) -> serde_json::Value {
    let v = match r {
        Record::Centre(v) => serde_json::to_value(&v.record),
        Record::Prescriber(v) => serde_json::to_value(&v.record),
        Record::Framework(v) => serde_json::to_value(&v.record),
        Record::Cohort(v) => serde_json::to_value(&v.record),
        Record::Patient(v) => serde_json::to_value(&v.record),
        Record::Episode(v) => serde_json::to_value(&v.record),
        Record::Authorisation(v) => serde_json::to_value(&v.record),
        Record::FollowUp(v) => serde_json::to_value(&v.record),
        Record::AdverseEvent(v) => serde_json::to_value(&v.record),
    };
    v.unwrap_or(serde_json::Value::Null)
}

fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The fields that differ between two versions' bodies.
pub fn changes(before: &serde_json::Value, after: &serde_json::Value) -> Vec<(String, String, String)> {
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| (k.clone(), text(b.get(k)), text(a.get(k))))
        .collect()
}

pub async fn show(State(web): State<Web>, signed: Signed, Path((kind, id)): Path<(String, String)>) -> Response {
    let lang = signed.lang;
    let Some(code) = pb::RecordKind::from_str_name(&format!("RECORD_KIND_{kind}")) else {
        return super::failure_for(&signed, StatusCode::NOT_FOUND, lang.t("error.no_page"));
    };
    let request = pb::GetHistoryRequest {
        kind: code.into(),
        id: id.clone(),
    };
    let (kind, id) = match observatory_grpc::parse::parse_history(&request) {
        Ok(x) => x,
        Err(_) => return super::failure_for(&signed, StatusCode::NOT_FOUND, lang.t("error.not_found")),
    };
    // Patient-level records within the caller's scope (GetHistory); reference records and
    // cohorts for every role that reads them.
    let operation = if kind.is_patient_level() {
        op("GetHistory")
    } else {
        op("GetReferenceHistory")
    };
    let records = match ops::history(web.app(), &signed.call(operation), kind, &id).await {
        Ok(r) => r,
        Err(e) => return refused(&signed, e),
    };
    let mut previous = serde_json::Value::Null;
    let mut versions = Vec::new();
    for r in &records {
        let meta = r.meta();
        let now = body(r);
        versions.push(Version {
            version: meta.version,
            recorded_at: lang.instant(meta.recorded_at),
            recorded_by: meta.recorded_by.clone(),
            reason: meta.reason.clone(),
            request_id: meta.request_id.clone(),
            changes: changes(&previous, &now),
        });
        previous = now;
    }
    versions.reverse();
    let back = match (kind, records.last()) {
        (RecordKind::Patient, _) => Some(format!("/patients/{id}")),
        (RecordKind::Episode, _) => Some(format!("/episodes/{id}")),
        (_, Some(Record::Authorisation(a))) => Some(format!("/episodes/{}", a.record.episode_id)),
        (_, Some(Record::FollowUp(f))) => Some(format!("/episodes/{}", f.record.episode_id)),
        (_, Some(Record::AdverseEvent(x))) => Some(format!("/episodes/{}", x.record.episode_id)),
        _ => None,
    };
    render(&History {
        page: signed.page(lang.t("history.title")),
        kind: crate::labels::label(lang, "record_kind", kind.code()),
        id,
        back,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::changes;

    #[test]
    fn a_version_shows_the_fields_it_changed() {
        let a = serde_json::json!({"status": "DECLARED", "dose": 1, "same": "x"});
        let b = serde_json::json!({"status": "INITIATED", "dose": 1, "same": "x", "end": "2026-01-01"});
        let c = changes(&a, &b);
        assert_eq!(
            c,
            vec![
                ("end".to_owned(), String::new(), "2026-01-01".to_owned()),
                ("status".to_owned(), "DECLARED".to_owned(), "INITIATED".to_owned()),
            ]
        );
        assert_eq!(
            changes(&serde_json::Value::Null, &a).len(),
            3,
            "the first version sets every field"
        );
    }
}
