//! Corrections from the episode's page: the episode (dates, prescriber, indication, dosage),
//! its authorisation (reference, dates) and a visit (date, assessments, measures), each with a
//! required reason, through the same operations as `UpdateEpisode`, `UpdateAuthorisation` and
//! `UpdateFollowUp`. The episode and authorisation forms open filled with what is recorded, so
//! a field left as it is changes nothing.

use axum::{
    extract::{Path, State},
    response::Response,
};
use observatory_app::registry as ops;
use observatory_domain::model::{Authorisation, Episode, RecordId};
use observatory_proto::v1 as pb;

use super::episodes::{after, dosage, not_found, rename_measures, typed_measures};
use super::{number, pb_enum};
use crate::{Posted, Web, form::Fields, op};

/// The forms' initial values: the episode and its authorisation as recorded.
pub(super) fn recorded(e: &Episode, a: Option<&Authorisation>) -> Vec<(String, String)> {
    let mut out = vec![
        ("fix_episode.request_date", e.request_date.to_string()),
        ("fix_episode.prescriber_rpps", e.prescriber_rpps.as_str().to_owned()),
        ("fix_episode.indication_orpha_code", e.indication.as_str().to_owned()),
    ];
    let dates = [
        ("fix_episode.first_administration_date", e.first_administration_date),
        ("fix_episode.end_date", e.end_date),
    ];
    out.extend(dates.into_iter().filter_map(|(k, d)| Some((k, d?.to_string()))));
    if let Some(d) = &e.dosage {
        out.extend([
            ("fix_episode.dosage.dose", d.dose.to_string()),
            ("fix_episode.dosage.unit", d.unit.clone()),
            ("fix_episode.dosage.frequency", d.frequency.clone()),
            ("fix_episode.dosage.route", d.route.code().to_owned()),
        ]);
    }
    if let Some(a) = a {
        out.push(("fix_authorisation.submitted_date", a.submitted_date.to_string()));
        if let Some(r) = &a.reference {
            out.push(("fix_authorisation.reference", r.clone()));
        }
        let dates = [
            ("fix_authorisation.decision_date", a.decision_date),
            ("fix_authorisation.valid_from", a.valid_from),
            ("fix_authorisation.valid_to", a.valid_to),
        ];
        out.extend(dates.into_iter().filter_map(|(k, d)| Some((k, d?.to_string()))));
    }
    out.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A field of a correction form: absent when left empty.
fn given(f: &Fields, name: &str) -> Option<String> {
    let v = f.get(name).trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// Violations of the API's fields named by the form's fields (`request_date` is
/// `fix_episode.request_date`), so that each shows under its input.
pub(super) fn under(status: tonic::Status, form: &str) -> tonic::Status {
    let violations = crate::form::violations(&status);
    if violations.is_empty() {
        return status;
    }
    let mut v = observatory_domain::Violations::new();
    for (field, why) in violations {
        v.push(format!("{form}.{field}"), "INVALID", why);
    }
    observatory_grpc::error::invalid(&v)
}

pub async fn episode(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let Ok(id) = RecordId::parse(&id) else {
        return not_found(&signed);
    };
    let f = &fields;
    let request = pb::UpdateEpisodeRequest {
        id: id.to_string(),
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        reason: f.get("fix_episode.reason").to_owned(),
        request_date: given(f, "fix_episode.request_date"),
        first_administration_date: given(f, "fix_episode.first_administration_date"),
        end_date: given(f, "fix_episode.end_date"),
        dosage: dosage(f, "fix_episode.dosage"),
        prescriber_rpps: given(f, "fix_episode.prescriber_rpps"),
        indication_orpha_code: given(f, "fix_episode.indication_orpha_code"),
    };
    let outcome = match observatory_grpc::parse::parse_episode_update(&request) {
        Err(s) => Err(s),
        Ok((rid, v, update, reason)) => {
            ops::update_episode(web.app(), &signed.call(op("UpdateEpisode")), rid, v, update, reason)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    }
    .map_err(|s| under(s, "fix_episode"));
    after(&web, &signed, &fields, &id, "fix_episode", outcome).await
}

pub async fn authorisation(State(web): State<Web>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let f = &fields;
    let Ok(episode) = RecordId::parse(f.get("episode_id")) else {
        return not_found(&signed);
    };
    let request = pb::UpdateAuthorisationRequest {
        id,
        expected_version: f.get("expected_version").parse().unwrap_or(0),
        reason: f.get("fix_authorisation.reason").to_owned(),
        reference: given(f, "fix_authorisation.reference"),
        submitted_date: given(f, "fix_authorisation.submitted_date"),
        decision_date: given(f, "fix_authorisation.decision_date"),
        valid_from: given(f, "fix_authorisation.valid_from"),
        valid_to: given(f, "fix_authorisation.valid_to"),
    };
    let outcome = match observatory_grpc::parse::parse_authorisation_update(&request) {
        Err(s) => Err(s),
        Ok((rid, v, update, reason)) => ops::update_authorisation(
            web.app(),
            &signed.call(op("UpdateAuthorisation")),
            rid,
            v,
            update,
            reason,
        )
        .await
        .map(|_| ())
        .map_err(observatory_grpc::error::app),
    }
    .map_err(|s| under(s, "fix_authorisation"));
    after(&web, &signed, &fields, &episode, "fix_authorisation", outcome).await
}

pub async fn visit(State(web): State<Web>, Path(episode): Path<String>, posted: Posted) -> Response {
    let Posted { signed, fields } = posted;
    let Ok(episode) = RecordId::parse(&episode) else {
        return not_found(&signed);
    };
    let f = &fields;
    // The visit and the version the form was drawn from: `id:version`.
    let chosen = f.get("fix_visit.visit");
    let (id, version) = chosen.split_once(':').unwrap_or((chosen, "0"));
    let (codes, measures) = typed_measures(f, "fix_visit.measure.");
    let request = pb::UpdateFollowUpRequest {
        id: id.to_owned(),
        expected_version: version.parse().unwrap_or(0),
        reason: f.get("fix_visit.reason").to_owned(),
        visit_date: given(f, "fix_visit.visit_date"),
        efficacy: pb_enum(
            f.get("fix_visit.efficacy"),
            "EFFICACY_ASSESSMENT_",
            pb::EfficacyAssessment::from_str_name,
        ),
        measures: (!measures.is_empty()).then_some(pb::MeasureList { measures }),
        weight_kg: given(f, "fix_visit.weight_kg").map(|w| number(&w)),
        adherence: pb_enum(f.get("fix_visit.adherence"), "ADHERENCE_", pb::Adherence::from_str_name),
    };
    let outcome = match observatory_grpc::parse::parse_follow_up_update(&request) {
        Err(s) => Err(s),
        Ok((rid, v, update, reason)) => {
            ops::update_follow_up(web.app(), &signed.call(op("UpdateFollowUp")), rid, v, update, reason)
                .await
                .map(|_| ())
                .map_err(observatory_grpc::error::app)
        }
    }
    // `measures[0].value` is `measure.ABR`, then `fix_visit.measure.ABR` like its input.
    .map_err(|s| under(rename_measures(s, &codes), "fix_visit"));
    after(&web, &signed, &fields, &episode, "fix_visit", outcome).await
}
