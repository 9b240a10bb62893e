//! What an attacker holding a valid token, or an operator during a fault, meets: disclosure
//! control that a caller cannot switch off, idempotency keys that belong to their caller,
//! requests whose cost is bounded by their size, registration that tells nothing of other
//! scopes.

use observatory_domain::access::Role;
use observatory_proto::v1::{
    self as pb, registry_service_client::RegistryServiceClient, report_service_client::ReportServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::helpers::{
    Authed, Backend, Bearer, TestApp, execute_sql, fresh_database, postgres_url, scoped_token, spawn_app, start_app,
    violated_fields,
};
use crate::on_both_backends;
use crate::reports_api::{download, q3, seed_registry, wait_for_end};

on_both_backends!(
    reports_leave_the_server_suppressed_at_the_floor_or_above,
    idempotency_keys_belong_to_their_caller,
    a_request_of_megabytes_of_repeated_values_is_refused_before_it_is_decoded,
    health_turns_not_serving_as_a_stop_begins,
    registration_neither_confirms_nor_denies_another_scopes_patient,
    loads_beyond_a_call_are_bounded_per_address_and_per_token,
    audit_events_past_retention_are_archived_and_the_rest_still_verifies,
    a_restored_backup_verifies_its_trail_and_reports_the_same_tables,
);

/// (field, reason) of each violation of an INVALID_ARGUMENT status.
pub(crate) fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| (v.field, v.reason)).collect())
        .unwrap_or_default()
}

async fn reports_leave_the_server_suppressed_at_the_floor_or_above(backend: Backend) {
    // The default floor is 10: an analyst cannot ask for less.
    let (url, dir) = fresh_database(backend).await;
    let mut app = start_app(url, dir, &[]).await;
    for asked in [1, 5, 9] {
        let status = app
            .reports
            .run_report(pb::RunReportRequest {
                suppression_threshold: asked,
                ..q3("")
            })
            .await
            .expect_err("below the floor");
        assert_eq!(
            violations(&status),
            vec![("suppression_threshold".to_owned(), "BELOW_FLOOR".to_owned())],
            "{asked}"
        );
        assert!(status.message().contains("at least 10"), "{}", status.message());
    }
    let listed = app
        .reports
        .list_report_runs(pb::ListReportRunsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.runs.is_empty(), "a refused request recorded a run");
    drop(app);

    // A deployment may set its own floor; a run at it publishes the threshold it used in its
    // manifest and in the methods section of its HTML report.
    let (url, dir) = fresh_database(backend).await;
    let mut app = start_app(url, dir, &[("OBSERVATORY_REPORT_MIN_THRESHOLD", "5")]).await;
    seed_registry(&app, 60).await;
    let status = app
        .reports
        .run_report(pb::RunReportRequest {
            suppression_threshold: 4,
            ..q3("")
        })
        .await
        .expect_err("below the configured floor");
    assert_eq!(
        violations(&status),
        vec![("suppression_threshold".to_owned(), "BELOW_FLOOR".to_owned())]
    );
    let default = app
        .reports
        .run_report(q3("default"))
        .await
        .expect("default")
        .into_inner();
    assert_eq!(default.suppression_threshold, 10, "0 asks for the default");
    let run = app
        .reports
        .run_report(pb::RunReportRequest {
            suppression_threshold: 5,
            ..q3("at-floor")
        })
        .await
        .expect("at the floor")
        .into_inner();
    assert_eq!(run.suppression_threshold, 5);
    let ended = wait_for_end(&mut app, &run.run_id).await;
    assert_eq!(ended.status, pb::ReportRunStatus::Succeeded as i32, "{}", ended.error);
    let (manifest, ..) = download(&mut app, &run.run_id, "manifest.json")
        .await
        .expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest is JSON");
    assert_eq!(manifest["suppression_threshold"], 5);
    // The page is in French by default, in English on request; both state the threshold.
    let (html, ..) = download(&mut app, &run.run_id, "report.html").await.expect("html");
    let html = String::from_utf8(html).expect("utf-8");
    assert!(
        html.contains("<html lang=\"fr\"") && html.contains("Les effectifs inférieurs à 5 sont affichés &lt;5"),
        "methods state the threshold"
    );
    let english = app
        .reports
        .run_report(pb::RunReportRequest {
            suppression_threshold: 5,
            language: "en".into(),
            ..q3("at-floor-en")
        })
        .await
        .expect("in English")
        .into_inner();
    assert_eq!(english.language, "en");
    wait_for_end(&mut app, &english.run_id).await;
    let (html, ..) = download(&mut app, &english.run_id, "report.html").await.expect("html");
    let html = String::from_utf8(html).expect("utf-8");
    assert!(
        html.contains("Counts below 5 are shown as &lt;5"),
        "methods state the threshold in English"
    );
    let status = app
        .reports
        .run_report(pb::RunReportRequest {
            language: "de".into(),
            ..q3("german")
        })
        .await
        .expect_err("no German");
    assert_eq!(violated_fields(&status), vec!["language".to_owned()], "{status:?}");
    wait_for_end(&mut app, &default.run_id).await;
}

/// A registry client acting with `secret`.
pub(crate) fn registry_as(app: &TestApp, secret: &str) -> RegistryServiceClient<Authed> {
    RegistryServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(secret)))
}

fn cohort(key: &str, filiere: &str) -> pb::CreateCohortRequest {
    let (drug, orpha) = if filiere == "MHEMO" {
        ("B02BX07", "98878")
    } else {
        ("M09AX10", "70")
    };
    pb::CreateCohortRequest {
        idempotency_key: key.into(),
        name: format!("{filiere} cohort under AAC"),
        filiere: filiere.into(),
        pathway: pb::Pathway::Aac as i32,
        drug_atc: drug.into(),
        orpha_codes: vec![orpha.into()],
        framework_id: String::new(),
        follow_up_months: 3,
    }
}

async fn idempotency_keys_belong_to_their_caller(backend: Backend) {
    let app = spawn_app(backend).await;
    let mhemo = registry_as(
        &app,
        &scoped_token(&app.store, Role::DataManager, &[], &["MHEMO"]).await,
    );
    let filnemus = registry_as(
        &app,
        &scoped_token(&app.store, Role::DataManager, &[], &["FILNEMUS"]).await,
    );
    let first = mhemo
        .clone()
        .create_cohort(cohort("cohort-1", "MHEMO"))
        .await
        .expect("first caller")
        .into_inner();
    // Another caller's key of the same value is its own: neither squatted nor a mismatch.
    let other = filnemus
        .clone()
        .create_cohort(cohort("cohort-1", "FILNEMUS"))
        .await
        .expect("a key another caller used is free for this one")
        .into_inner();
    let (first_id, other_id) = (
        first.meta.as_ref().expect("meta").id.clone(),
        other.meta.as_ref().expect("meta").id.clone(),
    );
    assert_ne!(first_id, other_id);
    // Each replay answers its own caller's record.
    let replay = mhemo
        .clone()
        .create_cohort(cohort("cohort-1", "MHEMO"))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.meta.expect("meta").id, first_id);
    let replay = filnemus
        .clone()
        .create_cohort(cohort("cohort-1", "FILNEMUS"))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay.meta.expect("meta").id, other_id);
    // The same filière under a second token holds other keys again: keys follow the token, and
    // its call is a new cohort, not the replay of the first token's.
    let second_token = registry_as(
        &app,
        &scoped_token(&app.store, Role::DataManager, &[], &["MHEMO"]).await,
    );
    let third = second_token
        .clone()
        .create_cohort(cohort("cohort-1", "MHEMO"))
        .await
        .expect("a new cohort for another token")
        .into_inner();
    let third_id = third.meta.expect("meta").id;
    assert!(third_id != first_id && third_id != other_id);

    // Report runs too: an analyst replaying another analyst's key and parameters starts a run of
    // its own, and does not learn of the other's.
    let analyst =
        |secret: String| ReportServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(&secret)));
    let mut a = analyst(scoped_token(&app.store, Role::Analyst, &[], &["FILNEMUS"]).await);
    let mut b = analyst(scoped_token(&app.store, Role::Analyst, &[], &["FILNEMUS"]).await);
    let run_a = a.run_report(q3("q3")).await.expect("run a").into_inner();
    let run_b = b.run_report(q3("q3")).await.expect("run b").into_inner();
    assert_ne!(run_a.run_id, run_b.run_id);
    let again = a.run_report(q3("q3")).await.expect("replay a").into_inner();
    assert_eq!(again.run_id, run_a.run_id);
    let status = b
        .run_report(pb::RunReportRequest {
            suppression_threshold: 20,
            ..q3("q3")
        })
        .await
        .expect_err("b's own key with other parameters");
    assert_eq!(
        violations(&status),
        vec![("idempotency_key".to_owned(), "KEY_REUSED".to_owned())]
    );
}

async fn a_request_of_megabytes_of_repeated_values_is_refused_before_it_is_decoded(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let patient = app.patient(1).await;
    let before = app.row_count().await;
    let mut declaration = app.aac_declaration(
        &patient.meta.expect("meta").id,
        &cohort.meta.expect("meta").id,
        &rpps,
        "episode-1",
    );
    // Close to the 4 MiB a message may take: a million packed axes, and then some.
    declaration.off_label = Some(pb::OffLabelJustification {
        axes: vec![1; 3_000_000],
        evidence_reference: "PMID 1".into(),
    });
    let status = app
        .registry
        .declare_episode(declaration.clone())
        .await
        .expect_err("too many axes");
    assert_eq!(
        violations(&status),
        vec![("off_label.axes".to_owned(), "TOO_MANY".to_owned())]
    );
    // One over the maximum is refused the same way; the handler's own rule says the same.
    declaration.off_label = Some(pb::OffLabelJustification {
        axes: vec![1, 2, 3, 4, 1],
        evidence_reference: "PMID 1".into(),
    });
    let status = app
        .registry
        .declare_episode(declaration.clone())
        .await
        .expect_err("five axes");
    assert_eq!(
        violations(&status),
        vec![("off_label.axes".to_owned(), "TOO_MANY".to_owned())]
    );
    // Within the maximum, every element is checked and named.
    let mut patient = pb::RegisterPatientRequest {
        idempotency_key: "many".into(),
        subject: Some(pb::register_patient_request::Subject::Idmr("1".repeat(20))),
        sex: pb::Sex::Male as i32,
        birth_year_month: "2010-05".into(),
        region_code: "11".into(),
        objects_to_reuse: false,
        diagnoses: vec![pb::Diagnosis::default(); 21],
        cde: None,
    };
    let status = app
        .registry
        .register_patient(patient.clone())
        .await
        .expect_err("21 diagnoses");
    assert_eq!(
        violations(&status),
        vec![("diagnoses".to_owned(), "TOO_MANY".to_owned())]
    );
    patient.diagnoses = vec![pb::Diagnosis::default(); 20];
    let status = app
        .registry
        .register_patient(patient)
        .await
        .expect_err("20 empty diagnoses");
    let listed = violations(&status);
    let expected: Vec<(String, String)> = (0..20)
        .flat_map(|i| {
            [
                (format!("diagnoses[{i}].orpha_code"), "REQUIRED".to_owned()),
                (format!("diagnoses[{i}].status"), "REQUIRED".to_owned()),
            ]
        })
        .collect();
    assert_eq!(listed, expected);
    // An empty request is refused as the caller's fault.
    let status = app
        .registry
        .register_patient(pb::RegisterPatientRequest::default())
        .await
        .expect_err("empty");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(app.row_count().await, before, "refused requests stored nothing");
}

/// The health of the whole server, once.
async fn health_of(channel: &tonic::transport::Channel) -> Option<ServingStatus> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .ok()
        .map(|r| r.into_inner().status())
}

async fn health_turns_not_serving_as_a_stop_begins(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut watch = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .expect("watch health")
        .into_inner();
    let first = watch.message().await.expect("health").expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);
    // The stop waits for the open watch; the watch hears NOT_SERVING first.
    let stopping = tokio::spawn(app.stop());
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), watch.message())
        .await
        .expect("health changes as soon as the stop begins")
        .expect("health")
        .expect("a status");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    stopping.await.expect("stopped");
}

/// Whether a status carries a `google.rpc.RetryInfo`.
fn retry_info(status: &tonic::Status) -> Option<std::time::Duration> {
    use tonic_types::StatusExt;
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_postgres_refuses_connections_and_succeed_again_after() {
    let Some(admin) = postgres_url() else {
        eprintln!("OBSERVATORY_TEST_POSTGRES_URL is not set: PostgreSQL run not requested");
        return;
    };
    let (url, dir) = fresh_database(Backend::Postgres).await;
    let mut app = start_app(url.clone(), dir, &[("OBSERVATORY_HEALTH_CHECK_SECONDS", "1")]).await;
    app.centre_and_prescriber().await;
    let registration = |n: u32| pb::RegisterPatientRequest {
        idempotency_key: format!("outage-{n}"),
        subject: Some(pb::register_patient_request::Subject::Idmr(format!(
            "{:020}",
            50_000 + n
        ))),
        sex: pb::Sex::Female as i32,
        birth_year_month: "2012-03".into(),
        region_code: "11".into(),
        objects_to_reuse: false,
        diagnoses: Vec::new(),
        cde: None,
    };
    let before = app.patient(1).await;
    let rows = app.row_count().await;

    // The database goes away under the server: every connection cut, new ones refused.
    let name = url.rsplit('/').next().expect("database name").to_owned();
    let sql = |s: String| {
        let admin = admin.clone();
        async move {
            execute_sql(&admin, &s).await.expect("statement");
        }
    };
    sql(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false")).await;
    sql(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;

    // Writes and reads at once: each answered UNAVAILABLE, with when to retry, within 2 s.
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..12u32 {
        let mut registry = app.registry.clone();
        let patient_id = before.meta.as_ref().expect("meta").id.clone();
        let request = registration(n);
        calls.spawn(async move {
            let started = std::time::Instant::now();
            let result = if n % 2 == 0 {
                registry.register_patient(request).await.map(drop)
            } else {
                registry.get_patient(pb::GetRequest { id: patient_id }).await.map(drop)
            };
            (result, started.elapsed())
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (result, elapsed) = joined.expect("call task");
        let status = result.expect_err("no database, no answer");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            retry_info(&status).is_some(),
            "UNAVAILABLE says when to retry: {status:?}"
        );
        assert!(
            elapsed < std::time::Duration::from_secs(2),
            "answered after {elapsed:?}"
        );
    }
    let mut not_serving = false;
    for _ in 0..40 {
        if health_of(&app.channel).await == Some(ServingStatus::NotServing) {
            not_serving = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(not_serving, "health turns NOT_SERVING during the outage");

    // Back: health recovers by itself, and the refused writes, retried with their keys, are
    // written once each.
    sql(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await;
    let mut serving = false;
    for _ in 0..100 {
        if health_of(&app.channel).await == Some(ServingStatus::Serving) {
            serving = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(serving, "health comes back without a restart");
    for n in (0..12u32).step_by(2) {
        let first = app
            .registry
            .register_patient(registration(n))
            .await
            .expect("retried write");
        let replay = app
            .registry
            .register_patient(registration(n))
            .await
            .expect("replayed write");
        assert_eq!(first.into_inner().meta, replay.into_inner().meta);
    }
    assert_eq!(
        app.store
            .scalar_i64("SELECT COUNT(*) FROM patient_versions")
            .await
            .expect("count"),
        7,
        "the first patient and the six retried ones, once each"
    );
    assert!(app.row_count().await > rows);
}

fn by_idmr(key: &str, idmr: &str) -> pb::RegisterPatientRequest {
    pb::RegisterPatientRequest {
        idempotency_key: key.into(),
        subject: Some(pb::register_patient_request::Subject::Idmr(idmr.into())),
        sex: pb::Sex::Male as i32,
        birth_year_month: "2010-05".into(),
        region_code: "11".into(),
        objects_to_reuse: false,
        diagnoses: Vec::new(),
        cde: None,
    }
}

fn by_identity(key: &str, last_name: &str) -> pb::RegisterPatientRequest {
    pb::RegisterPatientRequest {
        subject: Some(pb::register_patient_request::Subject::Identity(pb::Identity {
            last_name: last_name.into(),
            first_name: "Camille".into(),
            birth_date: "2010-05-17".into(),
            sex: pb::Sex::Male as i32,
        })),
        ..by_idmr(key, "")
    }
}

async fn registration_neither_confirms_nor_denies_another_scopes_patient(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut a = registry_as(
        &app,
        &scoped_token(&app.store, Role::Prescriber, &["750100125"], &[]).await,
    );
    let mut b = registry_as(
        &app,
        &scoped_token(&app.store, Role::Prescriber, &["690781810"], &[]).await,
    );
    let idmr = "12345678901234567890";
    for (label, request) in [
        ("idmr", by_idmr("p-1", idmr)),
        ("identity", by_identity("p-2", "Martin")),
    ] {
        let at_a = a
            .register_patient(request.clone())
            .await
            .expect("A registers")
            .into_inner();
        // B registering the same person gets what any fresh registration gets: a record of its
        // own, version 1, recorded now by B. Even with A's key and payload.
        let at_b = b
            .register_patient(request.clone())
            .await
            .expect("B registers")
            .into_inner();
        let fresh = b
            .register_patient(match label {
                "idmr" => by_idmr("fresh-1", "98765432109876543210"),
                _ => by_identity("fresh-2", "Bernard"),
            })
            .await
            .expect("B registers someone new")
            .into_inner();
        let (ma, mb, mf) = (
            at_a.meta.clone().expect("meta"),
            at_b.meta.clone().expect("meta"),
            fresh.meta.clone().expect("meta"),
        );
        assert_ne!(ma.id, mb.id, "{label}: B is not told A's record");
        assert_eq!(
            (mb.version, mb.reason.as_str()),
            (mf.version, mf.reason.as_str()),
            "{label}"
        );
        assert_eq!(mb.recorded_by, mf.recorded_by, "{label}");
        let instant = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
        assert!(
            instant(&mb.recorded_at) > instant(&ma.recorded_at),
            "{label}: a record of now, not A's"
        );
        // Within a scope, a second registration is ALREADY_EXISTS, naming the scope's own record.
        for (client, own, other) in [(&mut a, &ma.id, &mb.id), (&mut b, &mb.id, &ma.id)] {
            let status = client
                .register_patient(pb::RegisterPatientRequest {
                    idempotency_key: format!("again-{label}"),
                    ..request.clone()
                })
                .await
                .expect_err("already registered here");
            assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
            assert!(status.message().contains(own.as_str()) && !status.message().contains(other.as_str()));
            // And each reads only its own.
            let denied = client
                .get_patient(pb::GetRequest { id: other.clone() })
                .await
                .expect_err("the other scope's record");
            assert_eq!(denied.code(), tonic::Code::PermissionDenied);
            let read = client
                .get_patient(pb::GetRequest { id: own.clone() })
                .await
                .expect("its own record, before any episode");
            assert_eq!(read.into_inner().meta.expect("meta").id, *own);
        }
    }
    // The refused calls are in the audit trail: the second registrations and the reads denied.
    let mut audit = app.audit.clone();
    let events = audit
        .export_audit(pb::ExportAuditRequest {
            from: Some(observatory_grpc::convert::ts(
                chrono::Utc::now() - chrono::Duration::hours(1),
            )),
            to: Some(observatory_grpc::convert::ts(
                chrono::Utc::now() + chrono::Duration::seconds(1),
            )),
            page: Some(pb::PageRequest {
                page_size: 500,
                page_token: String::new(),
            }),
        })
        .await
        .expect("export")
        .into_inner()
        .events;
    let refusals = |action: &str, reason: &str| {
        events
            .iter()
            .filter(|e| e.action == action && e.reason == reason)
            .count()
    };
    assert_eq!(refusals("RegisterPatient", "refused: ALREADY_EXISTS"), 4);
    assert_eq!(refusals("GetPatient", "refused: PERMISSION_DENIED"), 4);

    // Reports count the person once: six records, four people (two enrolled by both centres).
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshot = observatory_analytics::snapshot::extract(&app.store, chrono::Utc::now(), dir.path())
        .await
        .expect("snapshot");
    assert_eq!(snapshot.rows.get("patients"), Some(&4));
    assert_eq!(
        app.store
            .scalar_i64("SELECT COUNT(*) FROM patient_versions")
            .await
            .expect("count"),
        6
    );
}

async fn loads_beyond_a_call_are_bounded_per_address_and_per_token(backend: Backend) {
    use std::time::{Duration, Instant};
    let (url, dir) = fresh_database(backend).await;
    let mut app = start_app(
        url,
        dir,
        &[
            ("OBSERVATORY_AUTH_FAILURE_BURST", "5"),
            ("OBSERVATORY_AUTH_FAILURE_RATE_PER_SECOND", "1"),
            ("OBSERVATORY_RATE_LIMIT_PER_SECOND", "20"),
            ("OBSERVATORY_RATE_LIMIT_BURST", "20"),
            ("OBSERVATORY_REPORT_RUNS_PER_TOKEN", "2"),
        ],
    )
    .await;
    seed_registry(&app, 60).await;

    // Guessing tokens: past the address's burst, refused before any token is looked up.
    let mut guesser = registry_as(&app, "obs_notatokenatall");
    for _ in 0..5 {
        let status = guesser
            .get_patient(pb::GetRequest { id: "x".into() })
            .await
            .expect_err("unknown token");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
    let status = guesser
        .get_patient(pb::GetRequest { id: "x".into() })
        .await
        .expect_err("past the burst");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(retry_info(&status).is_some());
    // After a second the address has one more try, no more.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = guesser
        .get_patient(pb::GetRequest { id: "x".into() })
        .await
        .expect_err("one more");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // An import's items count against its token's rate: 40 items at 20 a second, with a burst
    // of 20 (the call itself takes one), take at least one second.
    let mut partner = crate::exchange::exchange_as(&app, Role::Partner, &[crate::helpers::TEST_CENTRE], &[]).await;
    let items: Vec<pb::ImportItem> = (0..40)
        .map(|n| {
            crate::exchange::item(
                &format!("row {n}"),
                pb::import_item::Write::RegisterPatient(crate::exchange::register(900 + n)),
            )
        })
        .collect();
    let started = Instant::now();
    let results = crate::exchange::import(&mut partner, items).await;
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(results.len(), 40);
    assert!(
        results
            .iter()
            .all(|r| matches!(r.outcome, Some(pb::import_result::Outcome::Written(_)))),
        "paced, not refused"
    );

    // Report runs: two per token may wait or run; a third is RESOURCE_EXHAUSTED, a replay is not.
    let first = app.reports.run_report(q3("busy-1")).await.expect("first").into_inner();
    let second = app.reports.run_report(q3("busy-2")).await.expect("second").into_inner();
    let status = app.reports.run_report(q3("busy-3")).await.expect_err("a third");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(retry_info(&status).is_some());
    let replay = app
        .reports
        .run_report(q3("busy-1"))
        .await
        .expect("a replay")
        .into_inner();
    assert_eq!(replay.run_id, first.run_id);
    wait_for_end(&mut app, &first.run_id).await;
    wait_for_end(&mut app, &second.run_id).await;
    let third = app
        .reports
        .run_report(q3("busy-3"))
        .await
        .expect("room again")
        .into_inner();
    wait_for_end(&mut app, &third.run_id).await;
}

async fn audit_events_past_retention_are_archived_and_the_rest_still_verifies(backend: Backend) {
    use observatory_server::audit::{archive, verify_archive};
    use observatory_store::audit::AuditKey;
    let mut app = spawn_app(backend).await;
    app.centre_and_prescriber().await;
    app.aac_cohort().await;
    app.patient(1).await;
    let key = AuditKey::from_hex(
        &std::fs::read_to_string(app.dir.path().join("observatory-audit.key")).expect("the audit key file"),
    )
    .expect("key");
    let head = app.store.audit_head().await.expect("head").expect("events");

    // Everything recorded so far is archived, then removed; the file holds it whole.
    let file = app.dir.path().join("audit-1.jsonl");
    let first = archive(&app.store, chrono::Utc::now(), &file)
        .await
        .expect("archive")
        .expect("events to archive");
    assert_eq!((first.first_seq, first.last_seq), (1, head.seq));
    assert_eq!(first.removed, head.seq as u64);
    let bytes = std::fs::read(&file).expect("archive file");
    let (from, to, last_hash, sha) = verify_archive(&bytes, Some(&key)).expect("the archive verifies");
    assert_eq!(
        (from, to, last_hash.as_str(), sha.as_str()),
        (1, head.seq, head.hash.as_str(), first.file_sha256.as_str())
    );
    // What is left verifies from the archive on, over gRPC too (the server holds the key).
    let v = app.store.verify_audit(None).await.expect("verify");
    assert_eq!(v.broken, None);
    assert_eq!(
        v.versions_without_event, 0,
        "versions written by archived events are the archive's"
    );
    let mut audit = app.audit.clone();
    let answer = audit
        .verify_audit(pb::VerifyAuditRequest::default())
        .await
        .expect("verify")
        .into_inner();
    assert!(answer.intact, "{answer:?}");
    assert!(answer.keyed_events >= 1);

    // An altered archive file does not verify.
    let mut forged = bytes.clone();
    let at = forged.windows(5).position(|w| w == b"admin").expect("an admin event");
    forged[at] = b'A';
    assert!(verify_archive(&forged, Some(&key)).is_err());

    // More events, a second archive after the first; nothing else may be removed.
    app.patient(2).await;
    let second = archive(&app.store, chrono::Utc::now(), &app.dir.path().join("audit-2.jsonl"))
        .await
        .expect("archive")
        .expect("new events");
    assert_eq!(second.first_seq, first.last_seq + 1);
    assert_eq!(app.store.verify_audit(None).await.expect("verify").broken, None);
    app.patient(3).await;
    let head = app.store.audit_head().await.expect("head").expect("events");
    let sql = |s: String| {
        let url = app.database_url.clone();
        async move { execute_sql(&url, &s).await }
    };
    assert!(
        sql(format!("DELETE FROM audit_events WHERE seq = {}", head.seq))
            .await
            .is_err(),
        "an event no archive covers cannot be removed"
    );
    // Someone without the key records a fake archive to excuse removing the newest events: the
    // keyed verification catches it.
    sql(format!(
        "INSERT INTO audit_archives (last_seq, last_hash, last_recorded_at, first_seq, file_sha256, archived_at, archived_by) \
         SELECT seq, hash, recorded_at, 1, '{}', recorded_at, 'someone' FROM audit_events WHERE seq = {}",
        "0".repeat(64),
        head.seq
    ))
    .await
    .expect("a forged archive row");
    sql(format!("DELETE FROM audit_events WHERE seq <= {}", head.seq))
        .await
        .expect("removal");
    let broken = app
        .store
        .verify_audit(None)
        .await
        .expect("verify")
        .broken
        .expect("caught");
    assert!(broken.problem.contains("without the key"), "{}", broken.problem);
}

/// Report tables of `store` for 2026-Q3 as the registry was known at `as_of`, by file name.
async fn report_tables(
    store: &observatory_store::Store,
    as_of: chrono::DateTime<chrono::Utc>,
    out: &std::path::Path,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    use observatory_analytics::{CsvStyle, Period, ReportOptions, report::Scope};
    let options = ReportOptions {
        period: Period::parse("2026-Q3").expect("period"),
        as_of,
        out: out.to_owned(),
        threshold: 10,
        csv: CsvStyle::Standard,
        scope: Scope::default(),
        language: observatory_analytics::synthesis::Language::En,
    };
    observatory_analytics::report::run(store, &options)
        .await
        .expect("report");
    std::fs::read_dir(out.join("tables"))
        .expect("tables")
        .map(|e| {
            let path = e.expect("entry").path();
            (
                path.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&path).expect("table"),
            )
        })
        .collect()
}

async fn a_restored_backup_verifies_its_trail_and_reports_the_same_tables(backend: Backend) {
    let app = spawn_app(backend).await;
    seed_registry(&app, 120).await;
    let as_of = chrono::Utc::now();
    let restored_dir = tempfile::tempdir().expect("temp dir");
    for key in ["observatory.key", "observatory-audit.key"] {
        std::fs::copy(app.dir.path().join(key), restored_dir.path().join(key)).expect("keys kept apart");
    }
    let restored_url = match backend {
        Backend::Sqlite => {
            // The documented procedure: `observatory backup --out FILE`, then that file as the
            // database.
            let file = restored_dir.path().join("observatory.db");
            app.store.backup(&file).await.expect("backup");
            assert!(app.store.backup(&file).await.is_err(), "never over an existing file");
            format!("sqlite://{}", file.display())
        }
        Backend::Postgres => {
            // The documented procedure: pg_dump --format=custom, pg_restore into a new database.
            let dump = restored_dir.path().join("observatory.dump");
            let ran = std::process::Command::new("pg_dump")
                .args(["--format=custom", "--file"])
                .arg(&dump)
                .arg(&app.database_url)
                .status()
                .expect("pg_dump");
            assert!(ran.success());
            let base = postgres_url().expect("postgres url");
            let url = observatory_store::testing::fresh_postgres_database(&base).await;
            let ran = std::process::Command::new("pg_restore")
                .args(["--no-owner", "--exit-on-error", "--dbname", &url])
                .arg(&dump)
                .status()
                .expect("pg_restore");
            assert!(ran.success());
            url
        }
    };
    let restored = start_app(restored_url, restored_dir, &[]).await;
    let v = restored.store.verify_audit(None).await.expect("verify");
    assert_eq!(v.broken, None, "{v:?}");
    assert!(
        v.keyed > 0 && v.versions_checked > 0 && v.versions_without_event == 0,
        "{v:?}"
    );
    let tables_dir = tempfile::tempdir().expect("temp dir");
    let original = report_tables(&app.store, as_of, &tables_dir.path().join("original")).await;
    let copy = report_tables(&restored.store, as_of, &tables_dir.path().join("restored")).await;
    assert!(original.len() >= 10, "{:?}", original.keys());
    assert_eq!(original, copy, "byte-identical report tables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_database_answer_raced_writes_as_one_would() {
    if postgres_url().is_none() {
        eprintln!("OBSERVATORY_TEST_POSTGRES_URL is not set: PostgreSQL run not requested");
        return;
    }
    let one = spawn_app(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("temp dir");
    for key in ["observatory.key", "observatory-audit.key"] {
        std::fs::copy(one.dir.path().join(key), dir.path().join(key)).expect("the same keys");
    }
    let two = start_app(one.database_url.clone(), dir, &[]).await;
    let secret = scoped_token(&one.store, Role::Prescriber, &[crate::helpers::TEST_CENTRE], &[]).await;
    for round in 0..5u32 {
        // The same key and payload, and then the same person under other keys, from both servers.
        let same_key = by_idmr(&format!("race-{round}"), &format!("{:020}", 90_000 + round));
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..16u32 {
            let mut client = registry_as(if n % 2 == 0 { &one } else { &two }, &secret);
            let request = if n < 12 {
                same_key.clone()
            } else {
                pb::RegisterPatientRequest {
                    idempotency_key: format!("race-{round}-other-{n}"),
                    ..same_key.clone()
                }
            };
            calls.spawn(async move { (n, client.register_patient(request).await) });
        }
        let mut ids = std::collections::BTreeSet::new();
        while let Some(joined) = calls.join_next().await {
            let (n, answer) = joined.expect("call");
            match answer {
                Ok(p) => {
                    ids.insert(p.into_inner().meta.expect("meta").id);
                }
                // What one server answers too: the person is registered in this scope already;
                // or the other server committed the same key first (retry replays it).
                Err(s) if s.code() == tonic::Code::AlreadyExists => {}
                Err(s) if s.code() == tonic::Code::Aborted && n < 12 => {
                    let mut client = registry_as(&one, &secret);
                    let replay = client
                        .register_patient(same_key.clone())
                        .await
                        .expect("the retry replays");
                    ids.insert(replay.into_inner().meta.expect("meta").id);
                }
                Err(s) => panic!("round {round} call {n}: {s:?}"),
            }
        }
        assert_eq!(ids.len(), 1, "round {round}: one person, one record: {ids:?}");
    }
    assert_eq!(
        one.store
            .scalar_i64("SELECT COUNT(*) FROM patient_versions")
            .await
            .expect("count"),
        5
    );
    // A write with no natural key (a cohort): the idempotency key alone decides.
    let manager = scoped_token(&one.store, Role::DataManager, &[], &["MHEMO"]).await;
    let mut aborted = 0;
    for round in 0..5u32 {
        let request = cohort(&format!("cohort-race-{round}"), "MHEMO");
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..16u32 {
            let mut client = registry_as(if n % 2 == 0 { &one } else { &two }, &manager);
            let request = request.clone();
            calls.spawn(async move { client.create_cohort(request).await });
        }
        let mut ids = std::collections::BTreeSet::new();
        while let Some(joined) = calls.join_next().await {
            match joined.expect("call") {
                Ok(c) => {
                    ids.insert(c.into_inner().meta.expect("meta").id);
                }
                Err(s) if s.code() == tonic::Code::Aborted => {
                    aborted += 1;
                    let mut client = registry_as(&two, &manager);
                    let replay = client.create_cohort(request.clone()).await.expect("the retry replays");
                    ids.insert(replay.into_inner().meta.expect("meta").id);
                }
                Err(s) => panic!("round {round}: {s:?}"),
            }
        }
        assert_eq!(ids.len(), 1, "round {round}: one key, one cohort: {ids:?}");
    }
    eprintln!("{aborted} calls met the other server's commit of their key");
    assert_eq!(
        one.store
            .scalar_i64("SELECT COUNT(*) FROM cohort_versions")
            .await
            .expect("count"),
        5
    );
    // The trail and the change feed stay whole across the two writers.
    let v = one.store.verify_audit(None).await.expect("verify");
    assert_eq!(v.broken, None, "{v:?}");
    let versions = one
        .store
        .scalar_i64(
            "SELECT (SELECT COUNT(*) FROM centre_versions) + (SELECT COUNT(*) FROM prescriber_versions) \
             + (SELECT COUNT(*) FROM framework_versions) + (SELECT COUNT(*) FROM patient_versions) \
             + (SELECT COUNT(*) FROM cohort_versions)",
        )
        .await
        .expect("versions");
    let changes = one
        .store
        .scalar_i64("SELECT COUNT(*) FROM changes")
        .await
        .expect("changes");
    let max = one
        .store
        .scalar_i64("SELECT COALESCE(MAX(seq), 0) FROM changes")
        .await
        .expect("max");
    assert_eq!((changes, max), (versions, versions), "one position per version, no gap");
}
