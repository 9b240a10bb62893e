//! The audit trail through the API: a scripted session of writes and reads leaves one event per
//! action, in an intact chain, which the admin exports and verifies; refused calls leave none.

use std::collections::HashMap;

use observatory_domain::access::Role;
use observatory_proto::v1::{self as pb, registry_service_client::RegistryServiceClient};
use tonic::{Code, Request, service::interceptor::InterceptedService};

use crate::helpers::{Backend, Bearer, spawn_app, token_for};
use crate::on_both_backends;

on_both_backends!(a_session_leaves_one_event_per_action_in_an_intact_chain);

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A request carrying the caller's request id and W3C trace context.
fn traced<T>(message: T, request_id: &str) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut()
        .insert("x-request-id", request_id.parse().expect("metadata"));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-01").parse().expect("metadata"),
    );
    req
}

fn get(id: &str) -> pb::GetRequest {
    pb::GetRequest { id: id.into() }
}

async fn a_session_leaves_one_event_per_action_in_an_intact_chain(backend: Backend) {
    let mut app = spawn_app(backend).await;
    // Tokens are made before the session: creating one is an action of its own.
    let analyst = token_for(&app.store, Role::Analyst).await;
    let mut analyst_as_registry =
        RegistryServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(&analyst)));
    let before = app.store.verify_audit(None).await.expect("verify").events;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);

    // The session: (action, role) of every call that must leave an event, in order.
    let mut expected: Vec<(&str, &str)> = Vec::new();
    let (_, rpps) = app.centre_and_prescriber().await;
    expected.extend([("CreateCentre", "admin"), ("CreatePrescriber", "admin")]);
    let cohort = app.aac_cohort().await;
    expected.push(("CreateCohort", "data_manager"));
    let patient = app.patient(1).await;
    expected.push(("RegisterPatient", "prescriber"));
    let pid = patient.meta.as_ref().expect("meta").id.clone();
    let declared = app
        .registry
        .declare_episode(traced(
            app.aac_declaration(&pid, &cohort.meta.as_ref().expect("meta").id, &rpps, "episode-1"),
            "0000aaaa-1111-2222-3333-444455556666",
        ))
        .await
        .expect("declare")
        .into_inner();
    expected.push(("DeclareEpisode", "prescriber"));
    let episode = declared.episode.expect("episode");
    let eid = episode.meta.as_ref().expect("meta").id.clone();

    let read = app
        .registry
        .get_patient(traced(get(&pid), "0000bbbb-1111-2222-3333-444455556666"))
        .await
        .expect("read")
        .into_inner();
    expected.push(("GetPatient", "prescriber"));
    app.registry.get_episode(get(&eid)).await.expect("episode");
    expected.push(("GetEpisode", "prescriber"));
    app.manager
        .list_episodes(pb::ListEpisodesRequest {
            patient_id: pid.clone(),
            ..Default::default()
        })
        .await
        .expect("list");
    expected.push(("ListEpisodes", "data_manager"));
    app.registry
        .list_follow_ups(pb::ListByEpisodeRequest {
            episode_id: eid.clone(),
            page: None,
        })
        .await
        .expect("follow-ups");
    expected.push(("ListFollowUps", "prescriber"));
    let corrected = app
        .manager
        .update_patient(pb::UpdatePatientRequest {
            id: pid.clone(),
            expected_version: 1,
            reason: "objection received by the centre".into(),
            region_code: None,
            vital_status: pb::VitalStatus::Unspecified as i32,
            objects_to_reuse: Some(true),
            diagnoses: None,
            cde: None,
            sex: 0,
            birth_year_month: None,
        })
        .await
        .expect("correct")
        .into_inner();
    expected.push(("UpdatePatient", "data_manager"));
    app.manager
        .get_history(pb::GetHistoryRequest {
            kind: pb::RecordKind::Patient as i32,
            id: pid.clone(),
        })
        .await
        .expect("history");
    expected.push(("GetHistory", "data_manager"));
    // Reference and cohort reads are not patient-level: no event.
    app.reference
        .list_centres(pb::ListCentresRequest::default())
        .await
        .expect("centres");
    app.registry
        .get_cohort(get(&cohort.meta.as_ref().expect("meta").id))
        .await
        .expect("cohort");

    // Refused calls store nothing. Bad input and a correction without a reason ask nothing of
    // the registry and leave no event; an unknown record (one answer with out of scope) and a
    // role without the right are recorded as refused, with no target.
    let bad = app.registry.get_patient(get("not-an-id")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let missing = app
        .registry
        .get_patient(get("01939a2c-0000-7000-8000-000000000000"))
        .await
        .unwrap_err();
    // Unknown and out of scope are one answer.
    assert_eq!(missing.code(), Code::PermissionDenied);
    expected.push(("GetPatient", "prescriber"));
    let denied = analyst_as_registry.get_patient(get(&pid)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    expected.push(("GetPatient", "analyst"));
    let no_reason = app
        .manager
        .update_patient(pb::UpdatePatientRequest {
            id: pid.clone(),
            expected_version: 2,
            reason: String::new(),
            region_code: Some(String::new()),
            vital_status: pb::VitalStatus::Unspecified as i32,
            objects_to_reuse: None,
            diagnoses: None,
            cde: None,
            sex: 0,
            birth_year_month: None,
        })
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);

    // The admin exports the period: exactly the session, in order, then the export itself.
    let export = |page_token: String| pb::ExportAuditRequest {
        from: Some(observatory_grpc::convert::ts(started)),
        to: Some(observatory_grpc::convert::ts(
            chrono::Utc::now() + chrono::Duration::seconds(1),
        )),
        page: Some(pb::PageRequest {
            page_size: 4,
            page_token,
        }),
    };
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .audit
            .export_audit(export(token))
            .await
            .expect("export")
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // The period began a little before the session, whose first event follows `before`.
    let before = i64::try_from(before).expect("count");
    events.retain(|e| e.seq > before);
    let session: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.action != "ExportAudit")
        .map(|e| (e.action.as_str(), e.role.as_str()))
        .collect();
    assert_eq!(session, expected);
    assert_eq!(events.first().map(|e| e.seq), Some(before + 1));
    let exports = events.iter().filter(|e| e.action == "ExportAudit").count();
    assert!(exports >= 1, "reading the trail is itself recorded");
    // The first event of each action; the refusals come last.
    let mut by_action: HashMap<&str, &pb::AuditEvent> = HashMap::new();
    for e in &events {
        by_action.entry(e.action.as_str()).or_insert(e);
    }
    let refusals: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.reason.starts_with("refused"))
        .map(|e| (e.role.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        refusals,
        [
            ("prescriber", "refused: PERMISSION_DENIED"),
            ("analyst", "refused: PERMISSION_DENIED")
        ]
    );
    assert!(
        events
            .iter()
            .filter(|e| e.reason.starts_with("refused"))
            .all(|e| e.targets.is_empty())
    );

    // Who, under which request and trace, on which records.
    let declare = by_action["DeclareEpisode"];
    assert_eq!(declare.request_id, "0000aaaa-1111-2222-3333-444455556666");
    assert_eq!(declare.trace_id, TRACE);
    assert!(declare.actor.starts_with("prescriber:"), "{}", declare.actor);
    let kinds: Vec<&str> = declare.targets.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["EPISODE", "AUTHORISATION"]);
    let get_patient = by_action["GetPatient"];
    assert_eq!(get_patient.request_id, "0000bbbb-1111-2222-3333-444455556666");
    assert_eq!(get_patient.targets.len(), 1);
    assert_eq!(
        (get_patient.targets[0].id.as_str(), get_patient.targets[0].version),
        (pid.as_str(), 1)
    );
    assert_eq!(read.meta.as_ref().expect("meta").version, 1);
    // The correction: its reason, and the digests before and after, chained to what was read
    // and registered.
    let update = by_action["UpdatePatient"];
    assert!(
        update.reason.contains("objection received by the centre"),
        "{}",
        update.reason
    );
    let register = by_action["RegisterPatient"];
    let t = &update.targets[0];
    assert_eq!((t.kind.as_str(), t.version), ("PATIENT", 2));
    assert_eq!(t.before_sha256, register.targets[0].after_sha256);
    assert_eq!(t.before_sha256, get_patient.targets[0].after_sha256);
    assert_ne!(t.before_sha256, t.after_sha256);
    assert_eq!(
        corrected.meta.as_ref().expect("meta").reason,
        update.reason,
        "history and trail agree"
    );
    let listed = by_action["ListEpisodes"];
    assert_eq!(listed.targets[0].kind, "PATIENT", "the query's subject");
    assert_eq!(listed.targets[1].id, eid);
    // The history read names every version it disclosed.
    assert_eq!(by_action["GetHistory"].targets.len(), 2);

    // The chain holds, over the API and on the command line.
    let verified = app
        .audit
        .verify_audit(pb::VerifyAuditRequest::default())
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.intact, "{verified:?}");
    let last = events.last().expect("events");
    assert_eq!(
        last.action, "ExportAudit",
        "an export is recorded before it reads the trail"
    );
    assert_eq!((verified.head_seq, &verified.head_hash), (last.seq, &last.hash));
    let anchor = format!("{}:{}", verified.head_seq, verified.head_hash);
    let again = app
        .audit
        .verify_audit(pb::VerifyAuditRequest { anchor: anchor.clone() })
        .await
        .expect("verify")
        .into_inner();
    assert!(again.intact, "{again:?}");
    let bad_anchor = app
        .audit
        .verify_audit(pb::VerifyAuditRequest {
            anchor: "12:xyz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::violated_fields(&bad_anchor), ["anchor"]);
    let bad_period = app
        .audit
        .export_audit(pb::ExportAuditRequest {
            from: Some(observatory_grpc::convert::ts(chrono::Utc::now())),
            to: Some(observatory_grpc::convert::ts(started)),
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::violated_fields(&bad_period), ["to"]);

    let verification = app
        .store
        .verify_audit(Some(&anchor.parse().expect("anchor")))
        .await
        .expect("verify");
    let (intact, text) = observatory_server::audit::verification_report(&verification);
    assert!(intact, "{text}");
    assert!(text.contains(&anchor), "{text}");
    let mut lines = Vec::new();
    let n = observatory_server::audit::export(&app.store, started, chrono::Utc::now(), &mut lines)
        .await
        .expect("export");
    let lines: Vec<serde_json::Value> = String::from_utf8(lines)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
        .collect();
    assert_eq!(lines.len() as u64, n);
    assert!(
        lines.len() > events.len(),
        "every event of the period, the exports included"
    );
    let first = lines
        .iter()
        .find(|l| l["seq"] == events[0].seq)
        .expect("the session's first event");
    assert_eq!(first["hash"], events[0].hash);
    assert_eq!(first["targets"][0]["kind"], "CENTRE");

    // Nothing in the trail names a person: no pseudonym, no identity field, no token.
    let pseudonyms = crate::helpers::text_rows(&app.database_url, "SELECT pseudonym FROM patient_versions").await;
    let pseudonym = pseudonyms.first().expect("a pseudonym").clone();
    let everything = crate::helpers::text_rows(
        &app.database_url,
        "SELECT actor || ' ' || action || ' ' || targets || ' ' || reason FROM audit_events",
    )
    .await
    .join("\n");
    assert!(!everything.contains(&pseudonym), "a pseudonym reached the trail");
    assert!(!everything.contains("obs_"), "a token reached the trail");
    assert!(
        !everything.contains("00000000000000001001"),
        "an identifier reached the trail"
    );
}
