//! The ExchangeService for partner systems:
//! - an import applies every item as its RegistryService call would (validation with field
//!   paths rooted at the item, role rule of the item's call, scope, idempotency), answers in the
//!   order sent, stores nothing of a refused item, replays without writing, and serves a caller
//!   that waits for each result before sending the next item;
//! - the change feed gives each scope its side of a two-centre registry in commit order,
//!   resumes from a position, filters by kind, follows new commits, records what it discloses
//!   in the audit trail, and ends when the server stops.

use std::time::Duration;

use observatory_domain::access::Role;
use observatory_proto::v1::{
    self as pb, exchange_service_client::ExchangeServiceClient, history_entry::Record as H, import_result::Outcome,
};
use observatory_server::access::{TokenRequest, create_token};
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

use crate::helpers::{Backend, Bearer, TEST_CENTRE, TestApp, scoped_token, spawn_app, telemetry, violated_fields};
use crate::on_both_backends;
use crate::scopes::{CENTRE_B, follow_up_request, two_sides};

on_both_backends!(
    a_file_is_imported_line_by_line_with_its_results_and_is_safe_to_rerun,
    an_import_applies_each_item_as_its_call_would_and_answers_in_order,
    the_feed_gives_each_scope_its_changes_in_commit_order_and_follows_new_ones,
    open_streams_end_with_their_token_and_with_the_server_and_are_counted_per_token,
    the_registry_is_exported_as_fhir_resources_within_scope_audited_and_since_an_instant,
);

pub(crate) type Exchange = ExchangeServiceClient<InterceptedService<Channel, Bearer>>;

/// An exchange client holding a new token of `role`, bound to `centres` and `filieres`.
pub(crate) async fn exchange_as(app: &TestApp, role: Role, centres: &[&str], filieres: &[&str]) -> Exchange {
    let secret = scoped_token(&app.store, role, centres, filieres).await;
    ExchangeServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(&secret)))
}

pub(crate) fn register(n: u32) -> pb::RegisterPatientRequest {
    pb::RegisterPatientRequest {
        idempotency_key: format!("import-patient-{n}"),
        subject: Some(pb::register_patient_request::Subject::Idmr(format!(
            "{:020}",
            50_000 + n
        ))),
        sex: pb::Sex::Female as i32,
        birth_year_month: "2011-04".into(),
        region_code: "11".into(),
        objects_to_reuse: false,
        diagnoses: vec![],
        cde: None,
    }
}

pub(crate) fn item(reference: &str, write: pb::import_item::Write) -> pb::ImportItem {
    pb::ImportItem {
        reference: reference.into(),
        write: Some(write),
    }
}

pub(crate) async fn import(client: &mut Exchange, items: Vec<pb::ImportItem>) -> Vec<pb::ImportResult> {
    let mut results = client
        .import(tokio_stream::iter(items))
        .await
        .expect("import")
        .into_inner();
    let mut all = Vec::new();
    while let Some(result) = results.message().await.expect("result") {
        all.push(result);
    }
    all
}

fn written(result: &pb::ImportResult) -> &H {
    match &result.outcome {
        Some(Outcome::Written(entry)) => entry.record.as_ref().expect("record"),
        other => panic!("item {} ({}) not written: {other:?}", result.index, result.reference),
    }
}

fn refused(result: &pb::ImportResult) -> &pb::ImportError {
    match &result.outcome {
        Some(Outcome::Error(e)) => e,
        other => panic!("item {} ({}) not refused: {other:?}", result.index, result.reference),
    }
}

fn id_of(record: &H) -> String {
    let meta = match record {
        H::Patient(p) => p.meta.as_ref(),
        H::Episode(e) => e.meta.as_ref(),
        H::FollowUp(f) => f.meta.as_ref(),
        other => panic!("unexpected record {other:?}"),
    };
    meta.expect("meta").id.clone()
}

/// Reads a stream to its end: `None` when it ended cleanly, the code of the error it ended with
/// otherwise.
async fn end_of<T>(stream: &mut tonic::Streaming<T>) -> Option<Code> {
    loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(status) => return Some(status.code()),
        }
    }
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    app.store.scalar_i64(sql).await.expect("count")
}

async fn an_import_applies_each_item_as_its_call_would_and_answers_in_order(backend: Backend) {
    use pb::import_item::Write as W;
    let t = telemetry();
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await.meta.expect("meta").id;
    let mut partner = exchange_as(&app, Role::Partner, &[TEST_CENTRE], &[]).await;
    let items_ok = |status: &str| {
        crate::telemetry::metric_value(
            t,
            "observatory.import.items",
            &[("item", "register_patient"), ("rpc.grpc.status", status)],
        )
    };
    let (ok_before, invalid_before) = (items_ok("OK"), items_ok("INVALID_ARGUMENT"));

    // 300 patients (more than are in flight at once), three items refused among them, each for
    // its own reason.
    let mut items: Vec<pb::ImportItem> = (0..300)
        .map(|n| item(&format!("row-{n}"), W::RegisterPatient(register(n))))
        .collect();
    items[7] = item(
        "row-7",
        W::RegisterPatient(pb::RegisterPatientRequest {
            region_code: "99".into(),
            ..register(7)
        }),
    );
    items[8].write = None;
    items[9].reference = "x".repeat(101);
    let results = import(&mut partner, items.clone()).await;
    assert_eq!(results.len(), 300);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.index, i as u64, "answers in the order sent");
        if i != 9 {
            assert_eq!(result.reference, format!("row-{i}"));
        }
    }
    let region = refused(&results[7]);
    assert_eq!(region.code, Code::InvalidArgument as i32);
    assert_eq!(
        region.violations.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
        vec!["register_patient.region_code"],
        "{region:?}"
    );
    assert_eq!(refused(&results[8]).violations[0].field, "write");
    assert_eq!(refused(&results[9]).violations[0].field, "reference");
    let patients: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| ![7, 8, 9].contains(i))
        .map(|(_, r)| id_of(written(r)))
        .collect();
    assert_eq!(patients.len(), 297);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM patient_versions").await, 297);
    assert!(items_ok("OK") >= ok_before + 297.0);
    assert!(items_ok("INVALID_ARGUMENT") >= invalid_before + 1.0);

    // The same import again: the same records, nothing written, each replay audited as a read.
    let audited = count(&app, "SELECT COUNT(*) FROM audit_events").await;
    let again = import(&mut partner, items).await;
    let replayed: Vec<String> = again
        .iter()
        .enumerate()
        .filter(|(i, _)| ![7, 8, 9].contains(i))
        .map(|(_, r)| id_of(written(r)))
        .collect();
    assert_eq!(replayed, patients);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM patient_versions").await, 297);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM audit_events").await, audited + 297);

    // Their episodes, each needing its patient's id from the first import.
    let episodes = import(
        &mut partner,
        patients
            .iter()
            .enumerate()
            .map(|(n, patient)| {
                item(
                    &format!("episode-{n}"),
                    W::DeclareEpisode(app.aac_declaration(patient, &cohort, &rpps, &format!("import-episode-{n}"))),
                )
            })
            .collect(),
    )
    .await;
    assert!(episodes.iter().all(|r| matches!(written(r), H::Episode(_))));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM episode_versions").await, 297);

    // Each item's own role rule: a data manager corrects, but does not register.
    let mut manager = exchange_as(&app, Role::DataManager, &[], &["MHEMO"]).await;
    let mixed = import(
        &mut manager,
        vec![
            item("new", W::RegisterPatient(register(500))),
            item(
                "fix",
                W::UpdatePatient(pb::UpdatePatientRequest {
                    id: patients[0].clone(),
                    expected_version: 1,
                    reason: "region corrected from the hospital record".into(),
                    region_code: Some("84".into()),
                    ..Default::default()
                }),
            ),
        ],
    )
    .await;
    assert_eq!(refused(&mixed[0]).code, Code::PermissionDenied as i32);
    assert!(matches!(written(&mixed[1]), H::Patient(p) if p.region_code == "84"));

    // Out of its scope: a partner of another centre learns nothing and writes nothing.
    let mut other = exchange_as(&app, Role::Partner, &[CENTRE_B], &[]).await;
    let rows = app.row_count().await;
    let foreign = import(
        &mut other,
        vec![item(
            "foreign",
            W::RecordFollowUp(follow_up_request(&id_of(written(&episodes[0])), "foreign-follow-up")),
        )],
    )
    .await;
    assert_eq!(refused(&foreign[0]).code, Code::PermissionDenied as i32);
    assert_eq!(app.row_count().await, rows);

    // A caller that waits for each result before sending the next item is served.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut stepwise = partner
        .import(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("import")
        .into_inner();
    tx.send(item("first", W::RegisterPatient(register(600))))
        .await
        .expect("send");
    let first = tokio::time::timeout(Duration::from_secs(10), stepwise.message())
        .await
        .expect("answered before the next item")
        .expect("result")
        .expect("a result");
    let patient = id_of(written(&first));
    tx.send(item(
        "second",
        W::DeclareEpisode(app.aac_declaration(&patient, &cohort, &rpps, "stepwise-episode")),
    ))
    .await
    .expect("send");
    drop(tx);
    let second = stepwise.message().await.expect("result").expect("a result");
    assert_eq!((second.index, second.reference.as_str()), (1, "second"));
    assert!(matches!(written(&second), H::Episode(_)));
    assert!(stepwise.message().await.expect("end").is_none());

    // Invalid items on the wire are refused by the call's own contract.
    let status = partner
        .import(tokio_stream::iter(vec![pb::ImportItem {
            reference: String::new(),
            write: Some(W::RegisterPatient(pb::RegisterPatientRequest::default())),
        }]))
        .await
        .expect("import")
        .into_inner()
        .message()
        .await
        .expect("result")
        .expect("a result");
    assert!(
        refused(&status)
            .violations
            .iter()
            .any(|v| v.field == "register_patient.idempotency_key")
    );
    app.stop().await;
}

async fn the_feed_gives_each_scope_its_changes_in_commit_order_and_follows_new_ones(backend: Backend) {
    let t = telemetry();
    let mut app = spawn_app(backend).await;
    let (a, b, mut prescriber_b) = two_sides(&mut app).await;
    let feed = async |client: &mut Exchange, request: pb::WatchChangesRequest| -> Vec<pb::Change> {
        let mut stream = client.watch_changes(request).await.expect("feed").into_inner();
        let mut all = Vec::new();
        while let Some(change) = stream.message().await.expect("change") {
            all.push(change);
        }
        all
    };
    let ids = |changes: &[pb::Change]| -> Vec<String> {
        changes
            .iter()
            .filter_map(|c| match c.record.as_ref()?.record.as_ref()? {
                H::Cohort(x) => x.meta.clone(),
                H::Patient(x) => x.meta.clone(),
                H::Episode(x) => x.meta.clone(),
                H::Authorisation(x) => x.meta.clone(),
                H::FollowUp(x) => x.meta.clone(),
                H::AdverseEvent(x) => x.meta.clone(),
                H::Centre(x) => x.meta.clone(),
                H::Prescriber(x) => x.meta.clone(),
                H::Framework(x) => x.meta.clone(),
            })
            .map(|m| m.id)
            .collect()
    };
    let patient_level = |s: &crate::scopes::Side| {
        vec![
            s.patient.clone(),
            s.episode.clone(),
            s.authorisation.clone(),
            s.follow_up.clone(),
            s.adverse_event.clone(),
        ]
    };

    // Each caller catches up on its own side: positions increase, nothing of the other side.
    let mut at_a = exchange_as(&app, Role::Prescriber, &[TEST_CENTRE], &[]).await;
    let mut of_filnemus = exchange_as(&app, Role::Partner, &[], &["FILNEMUS"]).await;
    let lag_before = crate::telemetry::metric_value(t, "observatory.changes.lag", &[]);
    let seen_a = feed(&mut at_a, pb::WatchChangesRequest::default()).await;
    let seen_b = feed(&mut of_filnemus, pb::WatchChangesRequest::default()).await;
    for seen in [&seen_a, &seen_b] {
        assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "commit order");
    }
    let (ids_a, ids_b) = (ids(&seen_a), ids(&seen_b));
    for id in patient_level(&a) {
        assert!(ids_a.contains(&id) && !ids_b.contains(&id), "{id}");
    }
    for id in patient_level(&b) {
        assert!(ids_b.contains(&id) && !ids_a.contains(&id), "{id}");
    }
    // A centre's prescriber reads every cohort; a filière's partner those of its filière.
    assert!(ids_a.contains(&a.cohort) && ids_a.contains(&b.cohort));
    assert!(ids_b.contains(&b.cohort) && !ids_b.contains(&a.cohort));
    // Reference data reaches everyone.
    assert!(ids_a.contains(&CENTRE_B.to_owned()) && ids_b.contains(&TEST_CENTRE.to_owned()));
    assert!(crate::telemetry::metric_value(t, "observatory.changes.lag", &[]) >= lag_before + seen_a.len() as f64);

    // What it disclosed is in the audit trail.
    let events = app
        .store
        .audit_events(
            chrono::Utc::now() - chrono::Duration::minutes(5),
            chrono::Utc::now() + chrono::Duration::seconds(1),
            0,
            10_000,
        )
        .await
        .expect("events");
    let disclosed: String = events
        .iter()
        .filter(|e| e.action == "WatchChanges" && e.role == "prescriber")
        .map(|e| e.targets.clone())
        .collect();
    for id in patient_level(&a) {
        assert!(disclosed.contains(&id), "{id} sent without an audit event");
    }

    // Resuming after a position gives what came later, and kinds narrow it.
    let middle = seen_a[seen_a.len() / 2].position;
    let rest = feed(
        &mut at_a,
        pb::WatchChangesRequest {
            after_position: middle,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        rest,
        seen_a
            .iter()
            .filter(|c| c.position > middle)
            .cloned()
            .collect::<Vec<_>>()
    );
    let episodes = feed(
        &mut at_a,
        pb::WatchChangesRequest {
            kinds: vec![pb::RecordKind::Episode as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(!episodes.is_empty());
    assert!(
        episodes
            .iter()
            .all(|c| matches!(c.record.as_ref().and_then(|r| r.record.as_ref()), Some(H::Episode(_))))
    );
    let status = at_a
        .watch_changes(pb::WatchChangesRequest {
            kinds: vec![pb::RecordKind::Episode as i32, 0],
            ..Default::default()
        })
        .await
        .expect_err("an unspecified kind");
    assert_eq!(violated_fields(&status), vec!["kinds[1]".to_owned()]);

    // Following: a new follow-up at B reaches B's partner, not A's prescriber; one at A reaches A.
    let last_a = seen_a.last().expect("changes").position;
    let mut following = at_a
        .watch_changes(pb::WatchChangesRequest {
            after_position: last_a,
            follow: true,
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let at_b_follow_up = prescriber_b
        .record_follow_up(follow_up_request(&b.episode, "followed-at-b"))
        .await
        .expect("follow-up at B")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let at_a_follow_up = app
        .registry
        .record_follow_up(follow_up_request(&a.episode, "followed-at-a"))
        .await
        .expect("follow-up at A")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let next = tokio::time::timeout(Duration::from_secs(10), following.message())
        .await
        .expect("a new change within 10 s")
        .expect("change")
        .expect("open stream");
    // A's follow-up, committed after B's, comes with nothing of B's before it.
    let mut received = vec![next];
    while !ids(&received).contains(&at_a_follow_up) {
        let more = tokio::time::timeout(Duration::from_secs(10), following.message())
            .await
            .expect("the follow-up within 10 s")
            .expect("change")
            .expect("open stream");
        received.push(more);
    }
    assert!(received.iter().all(|c| c.position > last_a));
    assert!(!ids(&received).contains(&at_b_follow_up), "{received:?}");

    // Stopping the server ends a following feed (it would hold up the shutdown otherwise).
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the server stops with a feed open");
    let ended = tokio::time::timeout(Duration::from_secs(10), end_of(&mut following))
        .await
        .expect("the feed ends when the server stops");
    assert!(matches!(ended, None | Some(Code::Unavailable)), "{ended:?}");
}

async fn open_streams_end_with_their_token_and_with_the_server_and_are_counted_per_token(backend: Backend) {
    use observatory_grpc::exchange::{LIVENESS_CHECK, STREAMS_PER_TOKEN};
    let app = spawn_app(backend).await;
    let request = TokenRequest {
        client_subject: None,
        role: Role::Partner,
        centres: vec![TEST_CENTRE.to_owned()],
        filieres: vec![],
        expires_at: None,
    };
    let (token, secret) = create_token(&app.store, &request, "test").await.expect("token");
    let mut partner = ExchangeServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(&secret)));
    let follow = pb::WatchChangesRequest {
        follow: true,
        ..Default::default()
    };

    // A token holds a bounded number of streams; one more is refused until one ends.
    let mut feeds = Vec::new();
    for _ in 0..STREAMS_PER_TOKEN {
        feeds.push(partner.watch_changes(follow.clone()).await.expect("feed").into_inner());
    }
    let refused = partner
        .watch_changes(follow.clone())
        .await
        .expect_err("one stream too many");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportItem>(1);
    let also_refused = partner
        .import(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map(|_| ())
        .expect_err("an import counts too");
    assert_eq!(also_refused.code(), Code::ResourceExhausted, "{also_refused:?}");
    drop(tx);
    drop(feeds.pop());
    let mut freed = None;
    for _ in 0..50 {
        // The server learns that the caller left at its next wake-up (a poll, at the latest).
        if let Ok(feed) = partner.watch_changes(follow.clone()).await {
            freed = Some(feed.into_inner());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    feeds.push(freed.expect("a stream ended gives its place back"));

    // Revoking the token ends its open streams, an import too.
    drop(feeds.pop());
    let mut importing = None;
    for _ in 0..50 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportItem>(1);
        match partner.import(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
            Ok(import) => {
                importing = Some((tx, import.into_inner()));
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tx, mut importing) = importing.expect("an import once a feed ended");
    observatory_server::access::revoke_token(&app.store, &token.id, "test")
        .await
        .expect("revoke");
    tokio::time::sleep(LIVENESS_CHECK).await;
    let ended_feed = tokio::time::timeout(LIVENESS_CHECK * 5, end_of(&mut feeds[0]))
        .await
        .expect("the feed ends after its token is revoked");
    assert_eq!(ended_feed, Some(Code::Unauthenticated));
    tx.send(item(
        "after-revocation",
        pb::import_item::Write::RegisterPatient(register(900)),
    ))
    .await
    .expect("send");
    let ended_import = tokio::time::timeout(LIVENESS_CHECK * 5, importing.message())
        .await
        .expect("the import ends after its token is revoked")
        .expect_err("refused");
    assert_eq!(ended_import.code(), Code::Unauthenticated, "{ended_import:?}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM patient_versions").await, 0);

    // A stream open when the server stops ends, and does not hold the stop up.
    let other = scoped_token(&app.store, Role::Partner, &[TEST_CENTRE], &[]).await;
    let mut open = ExchangeServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(&other)))
        .watch_changes(follow)
        .await
        .expect("feed")
        .into_inner();
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the server stops with a stream open");
    let ended = tokio::time::timeout(Duration::from_secs(10), end_of(&mut open))
        .await
        .expect("the stream ends with the server");
    assert!(matches!(ended, None | Some(Code::Unavailable)), "{ended:?}");
}

/// The results of a file import, one JSON object per line.
fn results_of(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a results line is JSON"))
        .collect()
}

async fn a_file_is_imported_line_by_line_with_its_results_and_is_safe_to_rerun(backend: Backend) {
    use observatory_server::file_import::{self, Format};
    let app = spawn_app(backend).await;
    let state = observatory_grpc::ApiState {
        app: crate::helpers::app_of(&app.store).await,
        store: app.store.clone(),
        limiter: std::sync::Arc::new(observatory_grpc::bounds::RateLimiter::new(Default::default())),
    };
    let dir = tempfile::tempdir().expect("dir");
    let ndjson = dir.path().join("partner.ndjson");
    std::fs::write(
        &ndjson,
        [
            r#"{"reference":"ehr-1","register_patient":{"idmr":"00000000000000000101","sex":"SEX_MALE","birth_year_month":"2015-02","diagnoses":[{"orpha_code":"98878","status":"DIAGNOSIS_STATUS_CONFIRMED"}]}}"#,
            r#"{"reference":"ehr-2","register_patient":{"idmr":"00000000000000000102","sex":"SEX_PURPLE","birth_year_month":"2015-02"}}"#,
            "",
            r#"{"reference":"ehr-3","register_patient":{"idmr":"00000000000000000103","sex":"SEX_FEMALE","birth_year_month":"2031-02"}}"#,
            "not json",
            r#"{"register_patient":{"idmr":"00000000000000000104","sex":"SEX_FEMALE","birth_year_month":"2011-02"}}"#,
        ]
        .join("\n"),
    )
    .expect("write");
    let before = app.row_count().await;
    let summary = file_import::run(&state, &ndjson, None, None, 8, false)
        .await
        .expect("import");
    assert_eq!((summary.lines, summary.accepted, summary.refused), (5, 2, 3));
    let results = results_of(&summary.results);
    let status: Vec<(u64, &str)> = results
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [
            (1, "ACCEPTED"),
            (2, "REFUSED"),
            (4, "REFUSED"),
            (5, "REFUSED"),
            (6, "ACCEPTED")
        ],
        "one results line per input line, in order, blank lines skipped"
    );
    assert_eq!(results[0]["kind"], "PATIENT");
    assert_eq!(results[1]["reference"], "ehr-2");
    assert_eq!(results[1]["violations"][0]["field"], "register_patient.sex");
    assert_eq!(
        results[2]["violations"][0]["field"],
        "register_patient.birth_year_month"
    );
    assert_eq!(results[3]["code"], "INVALID_ARGUMENT");
    let first_ids: Vec<serde_json::Value> = vec![results[0]["id"].clone(), results[4]["id"].clone()];
    let after_first = app.row_count().await;
    assert!(after_first > before);

    // The same file again: the same answers, nothing written.
    let again = file_import::run(&state, &ndjson, None, None, 8, false)
        .await
        .expect("again");
    assert_eq!((again.accepted, again.refused), (2, 3));
    let replayed = results_of(&again.results);
    assert_eq!(vec![replayed[0]["id"].clone(), replayed[4]["id"].clone()], first_ids);
    assert_eq!(app.row_count().await, after_first, "a re-run writes nothing");

    // CSV: a header of field paths, typed cells, empty cells left out.
    let csv = dir.path().join("registry.csv");
    std::fs::write(
        &csv,
        "reference,register_patient.idmr,register_patient.sex,register_patient.birth_year_month,register_patient.objects_to_reuse,register_patient.diagnoses[0].orpha_code,register_patient.diagnoses[0].status,register_patient.cde.age_at_onset.kind,register_patient.cde.age_at_onset.months\n\
         csv-1,00000000000000000201,SEX_FEMALE,2012-03,false,589,DIAGNOSIS_STATUS_CONFIRMED,AGE_KIND_MONTHS,120\n\
         csv-2,\"00000000000000000202\",SEX_MALE,2012-03,true,70,DIAGNOSIS_STATUS_PROBABLE,,\n\
         csv-3,00000000000000000203,SEX_MALE,2012-03,maybe,70,,,\n\
         csv-4,00000000000000000204,SEX_MALE\n",
    )
    .expect("write");
    let results_path = dir.path().join("out.ndjson");
    let summary = file_import::run(&state, &csv, Some(Format::Csv), Some(results_path.clone()), 8, false)
        .await
        .expect("csv import");
    assert_eq!((summary.lines, summary.accepted, summary.refused), (4, 2, 2));
    let results = results_of(&results_path);
    assert_eq!(
        results[0]["line"], 2,
        "lines are numbered as in the file, header included"
    );
    assert_eq!(
        results[2]["violations"][0]["field"],
        "register_patient.objects_to_reuse"
    );
    assert_eq!(results[3]["reference"], "csv-4");
    let patient = app
        .store
        .require::<observatory_domain::model::Patient>(results[0]["id"].as_str().unwrap())
        .await
        .expect("stored");
    assert_eq!(patient.record.cde.age_at_onset.and_then(|a| a.months), Some(120));

    // A header naming no field of the contract refuses the file before anything is read.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "reference,register_patient.no_such_field\nx,y\n").expect("write");
    let err = file_import::run(&state, &bad, None, None, 8, false)
        .await
        .expect_err("bad header");
    assert!(err.to_string().contains("no_such_field"), "{err}");
    app.stop().await;
}

/// What an `ExportFhir` stream gave: the resources of each type (parsed), and the manifest.
async fn fhir_stream(
    exchange: &mut Exchange,
    request: pb::ExportFhirRequest,
) -> Result<
    (
        std::collections::BTreeMap<String, Vec<serde_json::Value>>,
        serde_json::Value,
    ),
    tonic::Status,
> {
    let mut stream = exchange.export_fhir(request).await?.into_inner();
    let mut resources: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    let mut manifest = None;
    while let Some(part) = stream.message().await? {
        assert!(manifest.is_none(), "the manifest comes last");
        match part.part.expect("a part") {
            pb::export_fhir_response::Part::Lines(lines) => {
                let text = String::from_utf8(lines.ndjson).expect("utf-8");
                assert!(text.ends_with('\n'), "whole lines");
                let parsed: Vec<serde_json::Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("a resource per line"))
                    .collect();
                assert_eq!(parsed.len(), lines.count as usize);
                for r in &parsed {
                    assert_eq!(r["resourceType"], lines.resource_type.as_str(), "one type per part");
                }
                resources.entry(lines.resource_type).or_default().extend(parsed);
            }
            pb::export_fhir_response::Part::Manifest(m) => manifest = Some(serde_json::from_str(&m).expect("JSON")),
        }
    }
    Ok((resources, manifest.expect("a manifest")))
}

/// `ExportFhir` and `observatory export fhir`: the records of a partner's centre as FHIR R4
/// resources (the access regime and off-label use as extensions, the seriousness criteria), in
/// the Bulk Data layout with a manifest whose counts are the lines; nothing patient-level of
/// another centre's; what changed after an instant only; one cohort; every patient-level record
/// audited; the command line writes the same resources to files.
async fn the_registry_is_exported_as_fhir_resources_within_scope_audited_and_since_an_instant(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let (episode, _, _) = crate::corrections::started_aac(&mut app, &rpps, 98).await;
    let event = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "fhir-ae".into(),
            episode_id: episode.clone(),
            onset_date: "2026-03-02".into(),
            meddra_pt_code: "10037660".into(),
            serious: true,
            outcome: pb::AeOutcome::Recovered as i32,
            causality: pb::Causality::Related as i32,
            case_details: Some(pb::CaseDetails {
                seriousness: vec![pb::SeriousnessCriterion::Hospitalisation as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("an event")
        .into_inner();
    let mut partner = exchange_as(&app, Role::Partner, &[TEST_CENTRE], &[]).await;
    let (resources, manifest) = fhir_stream(&mut partner, pb::ExportFhirRequest::default())
        .await
        .expect("the partner's export");
    let count = |t: &str| resources.get(t).map_or(0, Vec::len);
    assert_eq!(count("CodeSystem"), 2);
    assert_eq!(count("Patient"), 1);
    assert_eq!(count("MedicationRequest"), 1);
    assert_eq!(count("MedicationAdministration"), 1);
    assert_eq!(count("ResearchSubject"), 1);
    assert_eq!(count("AdverseEvent"), 1);
    assert!(count("ResearchStudy") >= 1);
    for entry in manifest["output"].as_array().expect("output") {
        let t = entry["type"].as_str().expect("type");
        assert_eq!(
            entry["count"].as_u64(),
            Some(count(t) as u64),
            "{t}: the manifest counts its lines"
        );
        assert_eq!(entry["url"], format!("{t}.ndjson"));
    }
    assert_eq!(manifest["error"], serde_json::json!([]));
    let patient = &resources["Patient"][0];
    assert_eq!(
        patient["meta"]["profile"][0],
        "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"
    );
    assert_eq!(
        patient["identifier"].as_array().map(Vec::len),
        Some(1),
        "the pseudonym only"
    );
    assert!(patient.get("name").is_none(), "no name, ever");
    let request = &resources["MedicationRequest"][0];
    assert_eq!(request["id"], episode.as_str());
    assert_eq!(
        request["extension"][0]["valueCoding"]["code"], "AAC",
        "the access regime, coded in the observatory's CodeSystem"
    );
    assert_eq!(request["status"], "active");
    let ae = &resources["AdverseEvent"][0];
    assert_eq!(ae["id"], event.meta.as_ref().expect("meta").id.as_str());
    assert_eq!(ae["seriousness"]["coding"][0]["code"], "serious");
    assert_eq!(
        ae["extension"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "C83052"
    );
    assert_eq!(
        ae["suspectEntity"][0]["instance"]["reference"],
        format!("MedicationAdministration/{episode}")
    );

    // Another centre's partner: the reference data, nothing patient-level.
    let mut elsewhere = exchange_as(&app, Role::Partner, &[CENTRE_B], &[]).await;
    let (theirs, _) = fhir_stream(&mut elsewhere, pb::ExportFhirRequest::default())
        .await
        .expect("another centre's export");
    assert!(
        theirs.keys().all(|t| t == "CodeSystem" || t == "ResearchStudy"),
        "{:?}",
        theirs.keys()
    );

    // Since an instant after every write: nothing changed.
    let later = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 1,
        nanos: 0,
    };
    let (changed, _) = fhir_stream(
        &mut partner,
        pb::ExportFhirRequest {
            since: Some(later),
            ..Default::default()
        },
    )
    .await
    .expect("since");
    assert!(changed.keys().all(|t| t == "CodeSystem"), "{:?}", changed.keys());
    // One cohort; an unknown one is refused as if out of scope.
    let cohort_id = resources["ResearchSubject"][0]["study"]["reference"]
        .as_str()
        .map(|s| s.trim_start_matches("ResearchStudy/").to_owned())
        .expect("the subject's study");
    let (one, _) = fhir_stream(
        &mut partner,
        pb::ExportFhirRequest {
            cohort_id: cohort_id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("one cohort");
    assert_eq!(one["ResearchStudy"].len(), 1);
    assert_eq!(one["Patient"].len(), 1);
    let denied = fhir_stream(
        &mut partner,
        pb::ExportFhirRequest {
            cohort_id: "0193a000-0000-7000-8000-0000000000ff".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("an unknown cohort");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let bad = fhir_stream(
        &mut partner,
        pb::ExportFhirRequest {
            cohort_id: "nope".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("a malformed id");
    assert_eq!(violated_fields(&bad), ["cohort_id"]);

    let audited = app
        .store
        .scalar_i64("SELECT COUNT(*) FROM audit_events WHERE action = 'ExportFhir'")
        .await
        .expect("count");
    assert!(audited >= 3, "{audited} patient-level batches audited");

    // The command line: the same resources, in files, the manifest last.
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("fhir");
    let local = crate::helpers::app_of(&app.store).await;
    let counts = observatory_server::exports::fhir(&local, observatory_app::fhir::FhirExport::default(), &out)
        .await
        .expect("export fhir");
    assert!(
        counts.iter().any(|(t, n)| *t == "AdverseEvent" && *n == 1),
        "{counts:?}"
    );
    let lines = std::fs::read_to_string(out.join("Patient.ndjson")).expect("Patient.ndjson");
    let patients: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(patients, resources["Patient"], "the same resources as the stream");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("manifest")).expect("JSON");
    assert_eq!(manifest["request"], "observatory export fhir");
    let again = observatory_server::exports::fhir(&local, observatory_app::fhir::FhirExport::default(), &out).await;
    assert!(again.is_err(), "a directory already written is not written over");
    app.stop().await;
}
