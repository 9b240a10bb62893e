//! Behaviour every backend must share, run on SQLite always and on PostgreSQL when
//! `OBSERVATORY_TEST_POSTGRES_URL` is set: append-only storage, group commit with isolated
//! commands, idempotency, tokens, and the hash-chained audit trail.

use observatory_domain::{
    codes::{Filiere, Finess, RegionCode, luhn_check_digit},
    model::{Centre, CentreType},
};
use observatory_store::{
    Command, Store, StoreError, StoreOptions, WriteContext,
    report_runs::{NewReportRun, Recorded, RunOutcome, RunStatus, RunTrigger},
    testing,
};

enum Backend {
    Sqlite,
    Postgres,
}

struct Db {
    store: Store,
    url: String,
    _dir: tempfile::TempDir,
}

async fn open(backend: Backend) -> Option<Db> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("registry.db").display()),
        Backend::Postgres => testing::fresh_postgres_database(&testing::postgres_url()?).await,
    };
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(Db { store, url, _dir: dir })
}

fn finess(n: u32) -> Finess {
    let payload = format!("{:08}", 75_000_000 + n);
    Finess::parse(&format!("{payload}{}", luhn_check_digit(&payload))).expect("valid FINESS")
}

fn centre(n: u32) -> Centre {
    Centre {
        finess: finess(n),
        name: format!("Centre {n}"),
        centre_type: CentreType::Ccmr,
        region: RegionCode::parse("11").expect("region"),
        filieres: vec![Filiere::parse("MHEMO").expect("filiere")],
    }
}

fn ctx(key: Option<&str>) -> WriteContext {
    WriteContext {
        actor: "conformance".into(),
        request_id: "req".into(),
        trace_id: String::new(),
        idempotency_key: key.map(str::to_owned),
        scope: None,
    }
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::open(super::Backend::Sqlite).await.expect("sqlite always runs");
                super::$name(db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match super::open(super::Backend::Postgres).await {
                    Some(db) => super::$name(db).await,
                    None => eprintln!("OBSERVATORY_TEST_POSTGRES_URL is not set: PostgreSQL run not requested"),
                }
            }
        }
    )+};
}

on_both_backends!(
    stored_versions_cannot_be_edited_or_deleted,
    concurrent_commands_commit_together_and_fail_alone,
    one_idempotency_key_writes_once_even_when_raced,
    a_command_failing_after_its_first_write_leaves_nothing_and_spares_its_group,
    report_runs_and_their_outcomes_are_written_once,
    tokens_are_kept_as_hashes_and_revoked_by_a_row_of_their_own,
    every_write_and_access_is_chained_in_the_audit_trail,
    concurrent_appenders_keep_one_unbroken_chain,
    tampering_with_the_audit_trail_is_caught,
    the_change_feed_numbers_every_version_written_in_commit_order,
    episodes_are_counted_by_pathway_once_each_and_pools_are_observed,
    faults_of_the_database_are_unavailable_not_internal,
    the_keyed_chain_and_the_records_hold_against_whoever_can_write_the_database,
    altered_and_unaudited_record_versions_are_caught,
    history_keeps_every_version_whatever_the_writes,
    centres_are_listed_by_any_of_their_filieres_old_versions_included,
);

/// Runs raw SQL on the database behind `db`, as an operator with a SQL console would.
async fn raw(db: &Db, sql: &str) -> Result<u64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await?;
        let r = sqlx::query(sql).execute(&pool).await.map(|r| r.rows_affected());
        pool.close().await;
        r
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await?;
        let r = sqlx::query(sql).execute(&pool).await.map(|r| r.rows_affected());
        pool.close().await;
        r
    }
}

async fn stored_versions_cannot_be_edited_or_deleted(db: Db) {
    db.store
        .execute(Command::CreateCentre(centre(1)), ctx(None))
        .await
        .expect("create");
    for sql in [
        "UPDATE centre_versions SET reason = 'rewritten'",
        "UPDATE centre_versions SET superseded_at = recorded_at WHERE superseded_at IS NULL AND version = 0",
        "DELETE FROM centre_versions",
        "DELETE FROM records",
        "UPDATE records SET kind = 'PATIENT'",
        "DELETE FROM framework_versions",
    ] {
        let outcome = raw(&db, sql).await;
        assert!(
            matches!(outcome, Err(_) | Ok(0)),
            "{sql} changed stored history: {outcome:?}"
        );
    }
    // Reasons and bodies are as written.
    let rewritten = db
        .store
        .scalar_i64("SELECT COUNT(*) FROM centre_versions WHERE reason = 'rewritten'")
        .await
        .unwrap();
    assert_eq!(rewritten, 0);
    let frameworks = db
        .store
        .scalar_i64("SELECT COUNT(*) FROM framework_versions")
        .await
        .unwrap();
    assert!(frameworks > 0, "shipped frameworks are loaded and still there");
    // Stamping a current version superseded twice is refused too.
    raw(&db, "UPDATE centre_versions SET superseded_at = recorded_at")
        .await
        .expect("stamping the current version once is the one allowed change");
    assert!(
        raw(&db, "UPDATE centre_versions SET superseded_at = recorded_at")
            .await
            .is_err()
    );
}

async fn concurrent_commands_commit_together_and_fail_alone(db: Db) {
    // 120 concurrent creations, every third one a duplicate of an earlier centre: the duplicates
    // fail on their own, everything else lands.
    let mut tasks = Vec::new();
    for i in 0..120u32 {
        let store = db.store.clone();
        let n = if i % 3 == 2 { i - 1 } else { i };
        tasks.push(tokio::spawn(async move {
            store.execute(Command::CreateCentre(centre(n)), ctx(None)).await
        }));
    }
    let mut ok = 0;
    let mut duplicates = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::AlreadyExists(_)) => duplicates += 1,
            Err(e) => panic!("unexpected error {e}: {:?}", std::error::Error::source(&e)),
        }
    }
    assert_eq!((ok, duplicates), (80, 40));
    let stored = db
        .store
        .scalar_i64("SELECT COUNT(*) FROM centre_versions")
        .await
        .unwrap();
    assert_eq!(stored, 80);
    let records = db
        .store
        .scalar_i64("SELECT COUNT(*) FROM records WHERE kind = 'CENTRE'")
        .await
        .unwrap();
    assert_eq!(records, 80, "a failed command leaves no row behind");
}

async fn one_idempotency_key_writes_once_even_when_raced(db: Db) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .execute(Command::CreateCentre(centre(7)), ctx(Some("same-key")))
                .await
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        let w = t.await.expect("task").expect("every replay succeeds");
        written.push(w);
    }
    assert_eq!(
        written.iter().filter(|w| !w.replayed).count(),
        1,
        "exactly one call wrote"
    );
    let first = written[0].records.clone();
    assert!(
        written.iter().all(|w| w.records == first),
        "every caller sees the same version"
    );
    assert_eq!(
        db.store
            .scalar_i64("SELECT COUNT(*) FROM centre_versions")
            .await
            .unwrap(),
        1
    );
    let other = db
        .store
        .execute(Command::CreateCentre(centre(8)), ctx(Some("same-key")))
        .await;
    assert!(
        matches!(other, Err(StoreError::IdempotencyMismatch { .. })),
        "{other:?}"
    );

    // The key belongs to its caller: another principal's "same-key" is another key. Its call
    // with the first caller's payload is not answered with the first caller's record, and a
    // new payload under that value is neither refused nor taken for a replay.
    let stranger = |key: &str| WriteContext {
        actor: "prescriber:another-token".into(),
        ..ctx(Some(key))
    };
    let probe = db
        .store
        .execute(Command::CreateCentre(centre(7)), stranger("same-key"))
        .await;
    assert!(matches!(probe, Err(StoreError::AlreadyExists(_))), "{probe:?}");
    let own = db
        .store
        .execute(Command::CreateCentre(centre(8)), stranger("same-key"))
        .await
        .expect("another caller's key does not block this one");
    assert!(!own.replayed);
    let replay = db
        .store
        .execute(Command::CreateCentre(centre(8)), stranger("same-key"))
        .await
        .expect("replay");
    assert!(replay.replayed && replay.records == own.records);
    let again = db
        .store
        .execute(Command::CreateCentre(centre(7)), ctx(Some("same-key")))
        .await
        .expect("the first caller's replay");
    assert!(again.replayed && again.records == first);
}

async fn a_command_failing_after_its_first_write_leaves_nothing_and_spares_its_group(db: Db) {
    // Fault injection through the database itself: the version row of a centre in region 94
    // cannot be inserted, after the command has already written its `records` row.
    if db.url.starts_with("sqlite:") {
        raw(
            &db,
            "CREATE TRIGGER injected_fault BEFORE INSERT ON centre_versions WHEN NEW.region_code = '94' \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        )
        .await
        .expect("inject");
    } else {
        raw(
            &db,
            "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$",
        )
        .await
        .expect("inject");
        raw(
            &db,
            "CREATE TRIGGER injected_fault BEFORE INSERT ON centre_versions FOR EACH ROW \
             WHEN (NEW.region_code = '94') EXECUTE FUNCTION injected_fault()",
        )
        .await
        .expect("inject");
    }
    let mut tasks = Vec::new();
    for n in 0..40u32 {
        let store = db.store.clone();
        let mut c = centre(100 + n);
        if n % 10 == 3 {
            c.region = RegionCode::parse("94").expect("region");
        }
        tasks.push(tokio::spawn(async move {
            store.execute(Command::CreateCentre(c), ctx(None)).await
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::Database(_)) => failed += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((ok, failed), (36, 4));
    let records = db
        .store
        .scalar_i64("SELECT COUNT(*) FROM records WHERE kind = 'CENTRE'")
        .await
        .unwrap();
    assert_eq!(records, 36, "the failed commands left no half-written record");
    assert_eq!(
        db.store
            .scalar_i64("SELECT COUNT(*) FROM centre_versions")
            .await
            .unwrap(),
        36
    );
}

/// The schema holds no identity field: patients are known by a pseudonym only.
#[test]
fn no_identity_field_exists_in_the_schema() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
    let mut checked = 0;
    for dialect in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(format!("{root}/{dialect}")).expect("migrations directory") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("migration").to_lowercase();
            // Comments may name what is absent; the schema itself may not.
            let sql: String = text
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            for forbidden in [
                "last_name",
                "first_name",
                "birth_date",
                "date_of_birth",
                "nir",
                "surname",
                "prenom",
                "nom_",
            ] {
                let found = sql
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|word| word == forbidden || (forbidden.ends_with('_') && word.starts_with(forbidden)));
                assert!(!found, "{} mentions the identity field {forbidden}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "both dialects were read");
}

fn report_run(key: Option<&str>, fingerprint: &str, schedule: Option<(&str, i64)>) -> NewReportRun {
    let now = chrono::Utc::now();
    NewReportRun {
        id: uuid::Uuid::now_v7().to_string(),
        requested_at: now,
        requested_by: "conformance".into(),
        request_id: "req".into(),
        trigger: if schedule.is_some() {
            RunTrigger::Schedule
        } else {
            RunTrigger::Request
        },
        schedule: schedule.map(|(s, _)| s.to_owned()),
        attempt: schedule.map_or(1, |(_, a)| a),
        idempotency_key: key.map(str::to_owned),
        fingerprint: fingerprint.into(),
        period_label: "2026-Q3".into(),
        as_of: now,
        filiere: None,
        parameters: serde_json::json!({"period": "2026-Q3"}),
        out_dir: "/reports/x".into(),
    }
}

async fn report_runs_and_their_outcomes_are_written_once(db: Db) {
    let first = report_run(Some("k"), "a", None);
    let Recorded::New(recorded) = db.store.record_report_run(&first).await.expect("record") else {
        panic!("a new run is new");
    };
    assert_eq!(recorded.run, first);
    // The same key: the earlier run with the same parameters, an error with others.
    match db.store.record_report_run(&report_run(Some("k"), "a", None)).await {
        Ok(Recorded::Replayed(r)) => assert_eq!(r.run.id, first.id),
        other => panic!("replay gave {other:?}"),
    }
    assert!(matches!(
        db.store.record_report_run(&report_run(Some("k"), "b", None)).await,
        Err(StoreError::IdempotencyMismatch { .. })
    ));
    // One (schedule, period, attempt) only.
    db.store
        .record_report_run(&report_run(None, "a", Some(("monthly", 1))))
        .await
        .expect("scheduled");
    assert!(matches!(
        db.store
            .record_report_run(&report_run(None, "a", Some(("monthly", 1))))
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(db.store.unfinished_report_runs().await.expect("unfinished").len(), 2);
    let outcome = RunOutcome {
        finished_at: chrono::Utc::now(),
        status: RunStatus::Failed,
        manifest: None,
        error: Some("disk full".into()),
    };
    db.store.finish_report_run(&first.id, &outcome).await.expect("finish");
    assert!(
        db.store.finish_report_run(&first.id, &outcome).await.is_err(),
        "a second outcome is refused"
    );
    let got = db.store.get_report_run(&first.id).await.expect("get").expect("found");
    assert_eq!(got.outcome.as_ref().map(|o| o.status), Some(RunStatus::Failed));
    assert_eq!(
        db.store
            .scheduled_report_runs("monthly")
            .await
            .expect("scheduled")
            .len(),
        1
    );
    for sql in [
        "UPDATE report_runs SET out_dir = '/elsewhere'",
        "DELETE FROM report_runs",
        "UPDATE report_run_outcomes SET status = 'succeeded'",
        "DELETE FROM report_run_outcomes",
    ] {
        let outcome = raw(&db, sql).await;
        assert!(
            matches!(outcome, Err(_) | Ok(0)),
            "{sql} changed a report run: {outcome:?}"
        );
    }
    assert_eq!(db.store.get_report_run(&first.id).await.expect("get"), Some(got));
}

async fn tokens_are_kept_as_hashes_and_revoked_by_a_row_of_their_own(db: Db) {
    use observatory_domain::access::{Role, Scope};
    use observatory_store::tokens::{NewToken, Revocation};
    // Microseconds: what PostgreSQL keeps of an instant.
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let token = NewToken {
        id: "0193-token".into(),
        secret_sha256: "ab".repeat(32),
        role: Role::Prescriber,
        scope: Scope::new(Role::Prescriber, vec![finess(1), finess(2)], vec![]).expect("scope"),
        created_at: now,
        created_by: "conformance".into(),
        expires_at: Some(now + chrono::Duration::days(1)),
        client_subject: None,
    };
    db.store.create_token(&token).await.expect("create");
    assert!(
        db.store.create_token(&token).await.is_err(),
        "one token per id and hash"
    );
    let found = db
        .store
        .token_by_secret_hash(&"ab".repeat(32))
        .await
        .expect("read")
        .expect("found");
    assert_eq!(found.token, token);
    assert_eq!(found.principal_at(now).map(|p| p.role), Some(Role::Prescriber));
    // A token held as a client certificate is found by the certificate's subject.
    let held = NewToken {
        id: "0193-certificate".into(),
        secret_sha256: "9a".repeat(32),
        role: Role::Partner,
        scope: Scope::new(Role::Partner, vec![finess(3)], vec![]).expect("scope"),
        client_subject: Some("CN=registry.example, O=Partner".into()),
        ..token.clone()
    };
    db.store.create_token(&held).await.expect("create");
    let by_subject = db
        .store
        .tokens_by_client_subject("CN=registry.example, O=Partner")
        .await
        .expect("read");
    assert_eq!(by_subject.iter().map(|t| &t.token).collect::<Vec<_>>(), vec![&held]);
    assert!(
        db.store
            .tokens_by_client_subject("CN=other")
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(found.principal_at(now + chrono::Duration::days(2)), None, "expired");
    assert!(
        db.store
            .token_by_secret_hash(&"cd".repeat(32))
            .await
            .expect("read")
            .is_none()
    );
    let revocation = Revocation {
        revoked_at: now,
        revoked_by: "conformance".into(),
    };
    db.store.revoke_token(&token.id, &revocation).await.expect("revoke");
    assert!(matches!(
        db.store.revoke_token(&token.id, &revocation).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        db.store.revoke_token("missing", &revocation).await,
        Err(StoreError::NotFound { .. })
    ));
    let listed = db.store.list_tokens().await.expect("list");
    // Same creation instant: listed by id.
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].token, held);
    assert_eq!(listed[1].token, token);
    assert_eq!(listed[1].principal_at(now), None, "revoked");
    for sql in [
        "UPDATE access_tokens SET role = 'admin'",
        "DELETE FROM access_tokens",
        "DELETE FROM access_token_revocations",
        "UPDATE access_token_revocations SET revoked_by = 'someone else'",
    ] {
        let outcome = raw(&db, sql).await;
        assert!(matches!(outcome, Err(_) | Ok(0)), "{sql} changed a token: {outcome:?}");
    }
    assert_eq!(db.store.list_tokens().await.expect("list"), listed);
}

// ---------------------------------------------------------------------------------------------
// Audit trail

use observatory_store::audit::{self, Anchor, AuditEntry, AuditEvent, AuditTarget, GENESIS};

/// Every event, in chain order.
async fn trail(db: &Db) -> Vec<AuditEvent> {
    let (from, to) = (
        chrono::DateTime::UNIX_EPOCH,
        chrono::Utc::now() + chrono::Duration::days(1),
    );
    db.store.audit_events(from, to, 0, 100_000).await.expect("trail")
}

fn access(actor: &str, id: &str) -> AuditEntry {
    AuditEntry {
        actor: actor.into(),
        action: "GetPatient".into(),
        targets: vec![AuditTarget::object("PATIENT", id)],
        request_id: "req-read".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        reason: String::new(),
    }
}

#[test]
fn event_hashes_cover_every_field_and_the_link() {
    let mut event = AuditEvent {
        seq: 1,
        recorded_at: chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
            .expect("instant")
            .to_utc(),
        actor: "prescriber:0192".into(),
        role: "prescriber".into(),
        action: "GetPatient".into(),
        targets: r#"[{"kind":"PATIENT","id":"p1"}]"#.into(),
        request_id: "r".into(),
        trace_id: String::new(),
        reason: String::new(),
        prev_hash: GENESIS.into(),
        hash: String::new(),
        mac: None,
    };
    let hash = event.expected_hash();
    let changes: [fn(&mut AuditEvent); 10] = [
        |e| e.seq = 2,
        |e| e.recorded_at += chrono::Duration::microseconds(1),
        |e| e.actor.push('x'),
        |e| e.role.push('x'),
        |e| e.action.push('x'),
        |e| e.targets = r#"[{"kind":"PATIENT","id":"p2"}]"#.into(),
        |e| e.request_id.push('x'),
        |e| e.trace_id.push('x'),
        |e| e.reason.push('x'),
        |e| e.prev_hash = "1".repeat(64),
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut changed = event.clone();
        change(&mut changed);
        assert_ne!(changed.expected_hash(), hash, "field {i} is not covered by the hash");
    }
    event.hash = hash;
    assert_eq!(event.expected_hash(), event.hash, "the hash does not cover itself");
    assert_eq!(audit::role_of("analyst:0192"), "analyst");
    assert_eq!(audit::role_of("command-line"), "system");
}

#[test]
fn anchors_parse_strictly() {
    let hash = "ab".repeat(32);
    let anchor: Anchor = format!("12:{}", hash.to_uppercase()).parse().expect("anchor");
    assert_eq!((anchor.seq, anchor.hash), (12, hash.clone()));
    for bad in [
        "12".to_owned(),
        "x:ab".into(),
        format!("0:{hash}"),
        format!("-1:{hash}"),
        "3:zz".into(),
    ] {
        assert!(bad.parse::<Anchor>().is_err(), "{bad}");
    }
}

async fn every_write_and_access_is_chained_in_the_audit_trail(db: Db) {
    use observatory_domain::access::{Role, Scope};
    use observatory_store::tokens::{NewToken, Revocation};
    // A fresh database holds the loading of the shipped frameworks, one event.
    let loaded = trail(&db).await;
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(
        (loaded[0].action.as_str(), loaded[0].role.as_str()),
        ("LoadReferenceData", "system")
    );
    assert_eq!(loaded[0].prev_hash, GENESIS);
    // Migrating again loads nothing and records nothing.
    db.store.migrate().await.expect("migrate again");

    let written = db
        .store
        .execute(Command::CreateCentre(centre(1)), ctx(Some("key-1")))
        .await
        .expect("create");
    // Refused: nothing done, and the attempt recorded as refused, with no target.
    assert!(
        db.store
            .execute(Command::CreateCentre(centre(1)), ctx(None))
            .await
            .is_err()
    );
    let replayed = db
        .store
        .execute(Command::CreateCentre(centre(1)), ctx(Some("key-1")))
        .await
        .expect("replay");
    assert!(replayed.replayed);
    db.store
        .record_access(access("prescriber:t1", "p1"))
        .await
        .expect("access");
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let token = NewToken {
        id: "0193-audited".into(),
        secret_sha256: "ef".repeat(32),
        role: Role::Admin,
        scope: Scope::new(Role::Admin, vec![], vec![]).expect("scope"),
        created_at: now,
        created_by: "command-line".into(),
        expires_at: None,
        client_subject: None,
    };
    db.store.create_token(&token).await.expect("token");
    let revocation = Revocation {
        revoked_at: now,
        revoked_by: "command-line".into(),
    };
    db.store.revoke_token(&token.id, &revocation).await.expect("revoke");
    // Refused: nothing recorded.
    assert!(db.store.revoke_token(&token.id, &revocation).await.is_err());
    let run = report_run(None, "audited", None);
    db.store.record_report_run(&run).await.expect("run");
    let outcome = RunOutcome {
        finished_at: now,
        status: RunStatus::Failed,
        manifest: None,
        error: Some("x".into()),
    };
    db.store.finish_report_run(&run.id, &outcome).await.expect("finish");

    let events = trail(&db).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "LoadReferenceData",
            "CreateCentre",
            "CreateCentre",
            "CreateCentre",
            "GetPatient",
            "CreateToken",
            "RevokeToken",
            "RunReport",
            "FinishReportRun"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.hash, e.expected_hash(), "event {}", e.seq);
        let prev = if i == 0 { GENESIS } else { events[i - 1].hash.as_str() };
        assert_eq!(e.prev_hash, prev, "event {}", e.seq);
    }
    // The write: who, under which request, and the digest of what was written.
    let create = &events[1];
    assert_eq!(
        (create.actor.as_str(), create.role.as_str(), create.request_id.as_str()),
        ("conformance", "system", "req")
    );
    let meta = written.records[0].meta();
    let targets = create.parsed_targets().expect("targets");
    assert_eq!(
        targets,
        [AuditTarget {
            kind: "CENTRE".into(),
            id: meta.id.clone(),
            version: Some(1),
            before: None,
            after: Some(audit::digest(&centre(1))),
        }]
    );
    assert_eq!(events[2].reason, "refused: ALREADY_EXISTS");
    assert_eq!(events[2].parsed_targets().expect("targets"), []);
    // The replay discloses the same version again, and says so.
    assert_eq!(events[3].parsed_targets().expect("targets"), targets);
    assert!(events[3].reason.contains("replay"), "{}", events[3].reason);
    // The read: the caller's role and trace.
    assert_eq!((events[4].role.as_str(), events[4].trace_id.len()), ("prescriber", 32));
    assert_eq!(
        events[5].parsed_targets().expect("targets"),
        [AuditTarget::object("ACCESS_TOKEN", "0193-audited")]
    );
    assert_eq!(events[8].reason, "failed");

    let verified = db.store.verify_audit(None).await.expect("verify");
    assert_eq!(verified.broken, None);
    assert_eq!(verified.events, 9);
    assert_eq!(verified.head, Some((9, events[8].hash.clone())));
    assert_eq!(
        db.store.audit_head().await.expect("head"),
        Some(Anchor {
            seq: 9,
            hash: events[8].hash.clone()
        })
    );
    // A period selects by time.
    let later = db
        .store
        .audit_events(now + chrono::Duration::days(1), now + chrono::Duration::days(2), 0, 100)
        .await
        .expect("period");
    assert!(later.is_empty());
    let paged = db
        .store
        .audit_events(chrono::DateTime::UNIX_EPOCH, now + chrono::Duration::days(1), 3, 2)
        .await
        .expect("page");
    assert_eq!(paged.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
}

async fn concurrent_appenders_keep_one_unbroken_chain(db: Db) {
    use observatory_domain::access::{Role, Scope};
    use observatory_store::tokens::NewToken;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..60u32 {
        let store = db.store.clone();
        tasks.spawn(async move {
            match n % 3 {
                0 => store
                    .execute(Command::CreateCentre(centre(100 + n)), ctx(None))
                    .await
                    .map(drop),
                1 => store.record_access(access("partner:t", &n.to_string())).await,
                // Tokens are written outside the group-commit writer, on connections of their own.
                _ => {
                    let now = chrono::Utc::now();
                    store
                        .create_token(&NewToken {
                            id: format!("token-{n}"),
                            secret_sha256: format!("{n:064}"),
                            role: Role::Admin,
                            scope: Scope::new(Role::Admin, vec![], vec![]).expect("scope"),
                            created_at: now,
                            created_by: "conformance".into(),
                            expires_at: None,
                            client_subject: None,
                        })
                        .await
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("append");
    }
    let verified = db.store.verify_audit(None).await.expect("verify");
    assert_eq!(verified.broken, None);
    assert_eq!(verified.events, 61, "one event per action, and the reference loading");
}

/// A fresh database of the same backend as `db`, with a short trail: the reference loading,
/// three centres and two reads (6 events).
async fn fresh_trail(db: &Db) -> Db {
    let backend = if db.url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let fresh = open(backend).await.expect("the same backend again");
    for n in 1..=3 {
        fresh
            .store
            .execute(Command::CreateCentre(centre(n)), ctx(None))
            .await
            .expect("create");
    }
    for id in ["p1", "p2"] {
        fresh
            .store
            .record_access(access("prescriber:t", id))
            .await
            .expect("read");
    }
    assert_eq!(fresh.store.verify_audit(None).await.expect("verify").events, 6);
    fresh
}

/// What an operator with full rights on the database could do first: switch the triggers off.
async fn disable_audit_triggers(db: &Db) {
    let statements: &[&'static str] = if db.url.starts_with("sqlite:") {
        &[
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ]
    } else {
        &["ALTER TABLE audit_events DISABLE TRIGGER USER"]
    };
    for sql in statements {
        raw(db, sql).await.expect("disable triggers");
    }
}

async fn broken_at(db: &Db, anchor: Option<&Anchor>) -> Option<(i64, String)> {
    let v = db.store.verify_audit(anchor).await.expect("verify");
    v.broken.map(|b| (b.seq, b.problem))
}

async fn tampering_with_the_audit_trail_is_caught(db: Db) {
    // The triggers refuse every change.
    let db = fresh_trail(&db).await;
    let truncate = if db.url.starts_with("sqlite:") {
        "DELETE FROM audit_events WHERE true"
    } else {
        "TRUNCATE audit_events"
    };
    for sql in [
        "UPDATE audit_events SET actor = 'someone else' WHERE seq = 3",
        "DELETE FROM audit_events WHERE seq = 6",
        truncate,
    ] {
        let outcome = raw(&db, sql).await;
        assert!(
            matches!(outcome, Err(_) | Ok(0)),
            "{sql} changed the trail: {outcome:?}"
        );
    }
    assert_eq!(broken_at(&db, None).await, None);

    // With the triggers off, an edited field...
    let edited = fresh_trail(&db).await;
    disable_audit_triggers(&edited).await;
    raw(&edited, "UPDATE audit_events SET actor = 'someone else' WHERE seq = 3")
        .await
        .expect("edit");
    let (seq, problem) = broken_at(&edited, None).await.expect("caught");
    assert_eq!(seq, 3, "{problem}");
    assert!(problem.contains("altered"), "{problem}");

    // ...an event edited and rehashed to fit, which the next one no longer links to...
    let rehashed = fresh_trail(&db).await;
    disable_audit_triggers(&rehashed).await;
    let mut third = trail(&rehashed).await.swap_remove(2);
    third.actor = "someone else".into();
    let hash = third.expected_hash();
    raw(
        &rehashed,
        &format!("UPDATE audit_events SET actor = 'someone else', hash = '{hash}' WHERE seq = 3"),
    )
    .await
    .expect("rehash");
    let (seq, problem) = broken_at(&rehashed, None).await.expect("caught");
    assert_eq!(seq, 4, "{problem}");
    assert!(problem.contains("does not link to event 3"), "{problem}");

    // ...a removed event, in the middle or first...
    for (sql, missing) in [
        ("DELETE FROM audit_events WHERE seq = 4", 4),
        ("DELETE FROM audit_events WHERE seq = 1", 1),
    ] {
        let removed = fresh_trail(&db).await;
        disable_audit_triggers(&removed).await;
        raw(&removed, sql).await.expect("delete");
        let (seq, problem) = broken_at(&removed, None).await.expect("caught");
        assert_eq!(seq, missing, "{problem}");
        assert!(problem.contains("missing"), "{problem}");
    }

    // ...and the newest events removed, which leaves no gap: caught against an anchor kept
    // outside the database.
    let cut = fresh_trail(&db).await;
    let head = cut.store.verify_audit(None).await.expect("verify").head.expect("head");
    let anchor = Anchor {
        seq: head.0,
        hash: head.1,
    };
    assert_eq!(broken_at(&cut, Some(&anchor)).await, None);
    disable_audit_triggers(&cut).await;
    raw(&cut, "DELETE FROM audit_events WHERE seq = 6")
        .await
        .expect("delete");
    assert_eq!(
        broken_at(&cut, None).await,
        None,
        "without an anchor the chain is merely shorter"
    );
    let (seq, problem) = broken_at(&cut, Some(&anchor)).await.expect("caught");
    assert_eq!(seq, 6, "{problem}");
    assert!(problem.contains("anchored event 6 is gone"), "{problem}");
}

async fn the_change_feed_numbers_every_version_written_in_commit_order(db: Db) {
    use observatory_domain::model::RecordKind;
    use observatory_store::Record;
    // The shipped frameworks, loaded at migration, open the feed.
    let shipped = db.store.changes_after(0, &[], 1000).await.expect("changes");
    assert!(!shipped.is_empty());
    assert!(shipped.iter().all(|c| c.record.kind() == RecordKind::Framework));
    let head = shipped.last().expect("a change").position;
    assert_eq!(head, shipped.len() as i64, "positions start at 1 with no gap");
    let mut watch = db.store.watch_changes();
    watch.borrow_and_update();

    // Concurrent writes from two stores on the same database (two writers, as two servers
    // would be), some refused and some replayed: one change per version written. Writes that
    // conflict go through one writer (each ten to one store): two writers racing for the same
    // key are not yet told apart from a database error.
    let second = Store::connect(&StoreOptions::new(&db.url))
        .await
        .expect("second writer");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..90u32 {
        let store = if (i / 10) % 2 == 0 {
            db.store.clone()
        } else {
            second.clone()
        };
        // In each ten: 0 and 1 share a centre and a key (one writes, the other replays); every
        // third otherwise repeats the centre before it (refused).
        let (n, key) = match i % 10 {
            0 => (i, Some(format!("key-{}", i / 10))),
            1 => (i - 1, Some(format!("key-{}", i / 10))),
            _ if i % 3 == 2 => (i - 1, None),
            _ => (i, None),
        };
        tasks.spawn(async move {
            store
                .execute(Command::CreateCentre(centre(300 + n)), ctx(key.as_deref()))
                .await
        });
    }
    let mut written = Vec::new();
    let (mut replays, mut refused) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(w) if w.replayed => replays += 1,
            Ok(w) => written.extend(w.records),
            Err(StoreError::AlreadyExists(_)) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(replays, 9, "one replay in each ten");
    assert!(refused > 0);
    assert!(
        watch.has_changed().expect("writer alive"),
        "the writer signals new changes"
    );
    let mut feed = Vec::new();
    let mut after = head;
    loop {
        // Small pages: resuming from a position misses nothing and repeats nothing.
        let page = db.store.changes_after(after, &[], 7).await.expect("changes");
        let Some(last) = page.last() else { break };
        after = last.position;
        feed.extend(page);
    }
    let positions: Vec<i64> = feed.iter().map(|c| c.position).collect();
    assert_eq!(
        positions,
        (head + 1..=head + written.len() as i64).collect::<Vec<_>>(),
        "one position per version written, in order, with no gap"
    );
    let mut fed: Vec<Record> = feed.into_iter().map(|c| c.record).collect();
    let key = |r: &Record| (r.meta().id.clone(), r.meta().version);
    fed.sort_by_key(key);
    written.sort_by_key(key);
    assert_eq!(fed, written, "the feed holds exactly the versions written");
    let recorded: Vec<_> = db
        .store
        .changes_after(head, &[], 1000)
        .await
        .expect("changes")
        .iter()
        .map(|c| c.record.meta().recorded_at)
        .collect();
    // Two writers commit in turn: each stamps its versions before it takes the lock, so the
    // time of writing may go back a little from one position to the next. Positions, not
    // times, order the feed.
    assert_eq!(recorded.len(), written.len());
    // A kind filter keeps the positions of the whole feed.
    let centres = db
        .store
        .changes_after(0, &[RecordKind::Centre], 1000)
        .await
        .expect("changes");
    assert_eq!(centres.len(), written.len());
    assert_eq!(centres[0].position, head + 1);
    assert!(
        db.store
            .changes_after(0, &[RecordKind::Patient], 10)
            .await
            .expect("changes")
            .is_empty()
    );
    second.close().await;
    // The feed is append-only like the trail.
    for sql in ["UPDATE changes SET version = 2", "DELETE FROM changes"] {
        assert!(raw(&db, sql).await.is_err(), "{sql} must be refused");
    }
}

async fn episodes_are_counted_by_pathway_once_each_and_pools_are_observed(db: Db) {
    use observatory_domain::{
        codes::{Atc, OrphaCode, Rpps},
        lifecycle::EpisodeDeclaration,
        model::*,
    };
    use observatory_store::NewCohort;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{
        InMemoryMetricExporter, SdkMeterProvider,
        data::{AggregatedMetrics, MetricData},
    };
    // A store whose instruments report to a provider of this test alone.
    let exported = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exported.clone())
        .build();
    let mut options = StoreOptions::new(&db.url);
    options.meter = Some(provider.meter("observatory"));
    let store = Store::connect(&options).await.expect("connect");
    let id = |w: observatory_store::Written| RecordId::from_minted(w.records[0].meta().id.clone());
    let run = async |c: Command, key: Option<&str>| store.execute(c, ctx(key)).await;
    run(Command::CreateCentre(centre(1)), None).await.expect("centre");
    let payload = "1000000001";
    let rpps = Rpps::parse(&format!("{payload}{}", luhn_check_digit(payload))).expect("rpps");
    run(
        Command::CreatePrescriber(Prescriber {
            rpps: rpps.clone(),
            specialty: "haematology".into(),
            centre_finess: finess(1),
        }),
        None,
    )
    .await
    .expect("prescriber");
    let cohort = id(run(
        Command::CreateCohort(NewCohort {
            name: "metrics".into(),
            filiere: Filiere::parse("MHEMO").expect("filiere"),
            pathway: Pathway::CommonLaw,
            drug_atc: Atc::parse("B02BX06").expect("atc"),
            orpha_codes: vec![OrphaCode::parse("98878").expect("orpha")],
            framework_id: None,
            follow_up_months: Some(3),
        }),
        None,
    )
    .await
    .expect("cohort"));
    let patient = id(run(
        Command::RegisterPatient(Patient {
            pseudonym: Pseudonym {
                kind: PseudonymKind::IdMr,
                value: "12345678901234567890".into(),
            },
            sex: Sex::Male,
            birth_year_month: YearMonth::parse("2010-01").expect("month"),
            region: None,
            vital_status: VitalStatus::Alive,
            objects_to_reuse: false,
            diagnoses: vec![],
            cde: Default::default(),
            rcp_reviews: Vec::new(),
            merged_into: None,
            merged_from: Vec::new(),
        }),
        None,
    )
    .await
    .expect("patient"));
    let declaration = EpisodeDeclaration {
        patient_id: patient,
        cohort_id: cohort,
        pathway: Pathway::CommonLaw,
        indication: OrphaCode::parse("98878").expect("orpha"),
        prescriber: rpps,
        centre_finess: None,
        rcp: None,
        off_label: None,
        dosage: None,
        request_date: parse_date("2025-01-01").expect("date"),
        authorisation: None,
        previous_episode: None,
        dispense_first: false,
        single_administration: false,
        rcp_review: None,
    };
    // Declared, replayed with its key, and declared again without one (refused: the patient
    // already has an active episode of the drug).
    run(Command::DeclareEpisode(declaration.clone()), Some("episode"))
        .await
        .expect("declared");
    let replay = run(Command::DeclareEpisode(declaration.clone()), Some("episode"))
        .await
        .expect("replayed");
    assert!(replay.replayed);
    run(Command::DeclareEpisode(declaration), None)
        .await
        .expect_err("a second active episode");

    provider.force_flush().expect("flush");
    let metrics = exported.get_finished_metrics().expect("metrics");
    let mut episodes = Vec::new();
    let mut pools = Vec::new();
    let mut waits = 0;
    for m in metrics.iter().flat_map(|r| r.scope_metrics()).flat_map(|s| s.metrics()) {
        let labels = |kvs: Vec<&opentelemetry::KeyValue>| -> Vec<String> {
            kvs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect()
        };
        match (m.name(), m.data()) {
            ("observatory.episodes.recorded", AggregatedMetrics::U64(MetricData::Sum(sum))) => {
                episodes.extend(sum.data_points().map(|p| (labels(p.attributes().collect()), p.value())));
            }
            ("db.client.connection.count", AggregatedMetrics::I64(MetricData::Gauge(g))) => {
                pools.extend(g.data_points().map(|p| labels(p.attributes().collect()).join(",")));
            }
            ("db.client.connection.wait_time", AggregatedMetrics::F64(MetricData::Histogram(h))) => {
                waits += h.data_points().map(|p| p.count()).sum::<u64>();
            }
            _ => {}
        }
    }
    assert_eq!(
        episodes,
        vec![(vec!["pathway=COMMON_LAW".to_owned()], 1)],
        "one episode counted: not its replay, not the refused one"
    );
    assert!(waits >= 6, "every write group waited for its connection: {waits}");
    let (pool, state) = if db.url.starts_with("sqlite:") {
        ("sqlite-writer", "idle")
    } else {
        ("postgresql", "idle")
    };
    assert!(
        pools
            .iter()
            .any(|p| p.contains(&format!("db.client.connection.pool.name={pool}")) && p.contains(state)),
        "{pools:?}"
    );
    store.close().await;
}

async fn faults_of_the_database_are_unavailable_not_internal(db: Db) {
    // A database that refuses writes (a read-only file or disk, a standby after failover).
    let refused = if db.url.starts_with("sqlite:") {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
            .expect("url")
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("read-only connection");
        let e = sqlx::query("CREATE TABLE refused (a INTEGER)")
            .execute(&pool)
            .await
            .expect_err("a read-only database refuses writes");
        pool.close().await;
        e
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connection");
        sqlx::query("SET default_transaction_read_only = on")
            .execute(&mut conn)
            .await
            .expect("read-only session");
        let e = sqlx::query("CREATE TABLE refused (a INTEGER)")
            .execute(&mut conn)
            .await
            .expect_err("a read-only session refuses writes");
        conn.close().await.expect("close");
        e
    };
    let classified = StoreError::from(refused);
    assert!(matches!(classified, StoreError::Unavailable(_)), "{classified:?}");
    // A rule of the database broken by a request stays a database error (INTERNAL), not a fault.
    const UNIQUE: &str = "INSERT INTO records (kind, id, created_at) SELECT kind, id, created_at FROM records";
    db.store
        .execute(Command::CreateCentre(centre(1)), ctx(None))
        .await
        .expect("create");
    let e = if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("connect");
        let e = sqlx::query(UNIQUE).execute(&pool).await.expect_err("duplicate ids");
        pool.close().await;
        e
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
        let e = sqlx::query(UNIQUE).execute(&pool).await.expect_err("duplicate ids");
        pool.close().await;
        e
    };
    assert!(matches!(StoreError::from(e), StoreError::Database(_)));

    // A database that cannot be reached at all: refused fast, as unavailable.
    let unreachable = if db.url.starts_with("sqlite:") {
        "sqlite:///nonexistent-directory/observatory.db".to_owned()
    } else {
        "postgres://postgres@127.0.0.1:1/observatory".to_owned()
    };
    let started = std::time::Instant::now();
    let mut options = StoreOptions::new(&unreachable);
    options.acquire_timeout = std::time::Duration::from_millis(500);
    let opened = Store::connect(&options).await;
    assert!(matches!(opened, Err(StoreError::Unavailable(_))), "{opened:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

async fn the_keyed_chain_and_the_records_hold_against_whoever_can_write_the_database(db: Db) {
    use observatory_store::audit::AuditKey;
    let key = AuditKey::new(vec![7; 32]).expect("key");
    let mut options = StoreOptions::new(&db.url);
    options.audit_key = Some(key.clone());
    let keyed = Store::connect(&options).await.expect("keyed store");
    for n in 1..=4 {
        keyed
            .execute(Command::CreateCentre(centre(n)), ctx(None))
            .await
            .expect("create");
    }
    keyed.record_access(access("prescriber:t", "p1")).await.expect("read");
    let v = keyed.verify_audit(None).await.expect("verify");
    assert_eq!(v.broken, None);
    // The reference data loaded at migration came before the key; every later event is keyed,
    // and every version written is named by its event and matches it.
    assert_eq!((v.unkeyed, v.keyed), (1, 5), "{v:?}");
    assert!(v.versions_checked >= 4, "{v:?}");
    assert_eq!(v.versions_without_event, 0);

    // Whoever can write the database rewrites event 3 and rehashes the chain after it: the
    // hash chain alone holds, the keyed one does not.
    disable_audit_triggers(&db).await;
    let mut events = trail(&db).await;
    events[2].actor = "someone else".into();
    for i in 2..events.len() {
        events[i].prev_hash = events[i - 1].hash.clone();
        events[i].hash = events[i].expected_hash();
        raw(
            &db,
            &format!(
                "UPDATE audit_events SET actor = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
                events[i].actor, events[i].prev_hash, events[i].hash, events[i].seq
            ),
        )
        .await
        .expect("rewrite");
    }
    assert_eq!(
        db.store.verify_audit(None).await.expect("verify").broken,
        None,
        "unkeyed: fooled"
    );
    let v = keyed.verify_audit(None).await.expect("verify");
    let broken = v.broken.expect("keyed: caught");
    assert_eq!(broken.seq, 3, "{}", broken.problem);
    assert!(broken.problem.contains("MAC"), "{}", broken.problem);
    // Stripping the MACs after it does not pass for an older trail either.
    raw(&db, "UPDATE audit_events SET mac = NULL WHERE seq >= 3")
        .await
        .expect("strip");
    let broken = keyed.verify_audit(None).await.expect("verify").broken.expect("caught");
    assert_eq!(broken.seq, 3);
    assert!(broken.problem.contains("no MAC"), "{}", broken.problem);
}

async fn altered_and_unaudited_record_versions_are_caught(db: Db) {
    let sqlite = db.url.starts_with("sqlite:");
    for n in 1..=3 {
        db.store
            .execute(Command::CreateCentre(centre(n)), ctx(None))
            .await
            .expect("create");
    }
    let v = db.store.verify_audit(None).await.expect("verify");
    assert_eq!((v.broken.as_ref(), v.versions_without_event), (None, 0));
    // A version inserted around the trail (inserts pass the append-only triggers): counted.
    raw(
        &db,
        "INSERT INTO centre_versions (id, version, recorded_at, recorded_by, reason, request_id, superseded_at, \
         body, region_code, filiere, centre_type) \
         SELECT id, version + 1, recorded_at, recorded_by, reason, request_id, recorded_at, body, region_code, \
         filiere, centre_type FROM centre_versions WHERE CAST(body AS TEXT) LIKE '%Centre 2%'",
    )
    .await
    .expect("insert around the trail");
    let v = db.store.verify_audit(None).await.expect("verify");
    assert_eq!((v.broken.as_ref(), v.versions_without_event), (None, 1), "{v:?}");
    // A stored version altered in place, triggers off: the event that wrote it no longer matches.
    let (off, edit) = if sqlite {
        (
            "DROP TRIGGER centre_versions_append_only",
            "UPDATE centre_versions SET body = json_set(body, '$.name', 'Forged') WHERE version = 1 AND body LIKE '%Centre 3%'",
        )
    } else {
        (
            "ALTER TABLE centre_versions DISABLE TRIGGER USER",
            "UPDATE centre_versions SET body = jsonb_set(body, '{name}', '\"Forged\"') WHERE version = 1 AND body->>'name' = 'Centre 3'",
        )
    };
    raw(&db, off).await.expect("triggers off");
    assert_eq!(raw(&db, edit).await.expect("alter"), 1);
    let broken = db
        .store
        .verify_audit(None)
        .await
        .expect("verify")
        .broken
        .expect("caught");
    assert!(broken.problem.contains("was altered"), "{}", broken.problem);
}

/// Property: whatever writes are tried on a patient, its episode and its authorisation (valid or
/// not, with current, stale or future expected versions, alone or in one group commit), the
/// history of each record only grows: every version read before is still there, unchanged, in
/// order, numbered without a gap; a refused write adds nothing; the current version is the last
/// of the history; and every version has its audit event.
async fn history_keeps_every_version_whatever_the_writes(db: Db) {
    use chrono::NaiveDate;
    use observatory_domain::{
        codes::{Atc, OrphaCode, Rpps},
        corrections::PatientUpdate,
        lifecycle::{AuthorisationRequest, AuthorisationTransition as AT, EpisodeDeclaration, EpisodeTransition as ET},
        model::*,
    };
    use observatory_store::{NewCohort, Record};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    #[derive(Debug, Clone)]
    enum Op {
        Authorisation(AT, i64),
        Episode(ET, i64),
        Patient(Option<&'static str>, VitalStatus, i64),
        FollowUp(NaiveDate),
        /// Two writes submitted at once: one group commit.
        Together(Box<Op>, Box<Op>),
    }

    /// Mostly in the first months of the episode, so that sequences go deep; some anywhere.
    fn date() -> impl Strategy<Value = NaiveDate> {
        prop_oneof![3 => 5i64..120, 1 => 0i64..330]
            .prop_map(|d| parse_date("2026-01-01").expect("date") + chrono::Duration::days(d))
    }
    fn single() -> impl Strategy<Value = Op> {
        // Mostly the current version; sometimes stale or ahead.
        let offset = prop_oneof![6 => Just(0i64), 1 => Just(-1i64), 1 => Just(1i64)];
        let reference = prop_oneof![1 => Just(None), 3 => Just(Some("ANSM-AAC-1".to_owned()))];
        let authorisation = prop_oneof![
            (date(), 0i64..300, reference.clone()).prop_map(|(decision_date, days, reference)| AT::Grant {
                decision_date,
                valid_from: decision_date,
                valid_to: decision_date + chrono::Duration::days(days),
                reference
            }),
            date().prop_map(|date| AT::SubmitRenewal { date }),
            (date(), date(), 0i64..120, reference).prop_map(|(decision_date, valid_from, days, reference)| AT::Renew {
                decision_date,
                valid_from,
                valid_to: valid_from + chrono::Duration::days(days),
                reference
            }),
            date().prop_map(|date| AT::Suspend { date }),
            date().prop_map(|date| AT::Reinstate { date }),
            date().prop_map(|date| AT::Refuse { date }),
            date().prop_map(|date| AT::Expire { date }),
        ];
        let episode = prop_oneof![
            3 => date().prop_map(|date| ET::Initiate { date, dosage: None }),
            1 => date().prop_map(|date| ET::Stop {
                date,
                reason: StopReason::Inefficacy
            }),
            1 => date().prop_map(|date| ET::LostToFollowUp { date }),
            1 => date().prop_map(|date| ET::Deceased { date }),
        ];
        prop_oneof![
            3 => (authorisation, offset.clone()).prop_map(|(t, o)| Op::Authorisation(t, o)),
            3 => (episode, offset.clone()).prop_map(|(t, o)| Op::Episode(t, o)),
            1 => (
                prop_oneof![Just(None), Just(Some("11")), Just(Some("84"))],
                prop_oneof![Just(VitalStatus::Alive), Just(VitalStatus::Unknown)],
                offset
            )
                .prop_map(|(r, s, o)| Op::Patient(r, s, o)),
            2 => date().prop_map(Op::FollowUp),
        ]
    }
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => single(),
            1 => (single(), single()).prop_map(|(a, b)| Op::Together(Box::new(a), Box::new(b))),
        ]
    }

    let store = &db.store;
    let run = async |c: Command| store.execute(c, ctx(None)).await;
    run(Command::CreateCentre(centre(1))).await.expect("centre");
    let payload = "1000000001";
    let rpps = Rpps::parse(&format!("{payload}{}", luhn_check_digit(payload))).expect("rpps");
    run(Command::CreatePrescriber(Prescriber {
        rpps: rpps.clone(),
        specialty: "haematology".into(),
        centre_finess: finess(1),
    }))
    .await
    .expect("prescriber");
    let minted = |w: observatory_store::Written| RecordId::from_minted(w.records[0].meta().id.clone());
    let cohort = minted(
        run(Command::CreateCohort(NewCohort {
            name: "history".into(),
            filiere: Filiere::parse("MHEMO").expect("filiere"),
            pathway: Pathway::Aac,
            drug_atc: Atc::parse("B02BX07").expect("atc"),
            orpha_codes: vec![OrphaCode::parse("98878").expect("orpha")],
            framework_id: None,
            follow_up_months: Some(3),
        }))
        .await
        .expect("cohort"),
    );

    /// The records of one case and what their histories were.
    struct Case {
        records: Vec<(RecordKind, String)>,
        seen: Vec<Vec<Record>>,
    }

    let cases = std::sync::atomic::AtomicU32::new(0);
    let writes = std::sync::atomic::AtomicU32::new(0);
    let handle = tokio::runtime::Handle::current();
    let one_case = async |ops: Vec<Op>| -> Result<(), TestCaseError> {
        let n = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let patient = minted(
            run(Command::RegisterPatient(Patient {
                pseudonym: Pseudonym {
                    kind: PseudonymKind::IdMr,
                    value: format!("{:020}", 90_000_000 + n),
                },
                sex: Sex::Female,
                birth_year_month: YearMonth::parse("2012-04").expect("month"),
                region: None,
                vital_status: VitalStatus::Alive,
                objects_to_reuse: false,
                diagnoses: vec![],
                cde: Default::default(),
                rcp_reviews: Vec::new(),
                merged_into: None,
                merged_from: Vec::new(),
            }))
            .await
            .expect("patient"),
        );
        let declared = run(Command::DeclareEpisode(EpisodeDeclaration {
            patient_id: patient.clone(),
            cohort_id: cohort.clone(),
            pathway: Pathway::Aac,
            indication: OrphaCode::parse("98878").expect("orpha"),
            prescriber: rpps.clone(),
            centre_finess: None,
            rcp: Some(Rcp {
                date: parse_date("2026-01-02").expect("date"),
                opinion: RcpOpinion::Favourable,
                level: None,
            }),
            off_label: None,
            dosage: None,
            request_date: parse_date("2026-01-05").expect("date"),
            authorisation: Some(AuthorisationRequest {
                submitted_date: parse_date("2026-01-05").expect("date"),
                reference: None,
            }),
            previous_episode: None,
            dispense_first: false,
            single_administration: false,
            rcp_review: None,
        }))
        .await
        .expect("declare");
        let episode = RecordId::from_minted(declared.records[0].meta().id.clone());
        let authorisation = declared
            .records
            .iter()
            .find(|r| r.kind() == RecordKind::Authorisation)
            .map(|r| RecordId::from_minted(r.meta().id.clone()))
            .expect("an AAC declaration files its request");
        let mut case = Case {
            records: vec![
                (RecordKind::Patient, patient.as_str().to_owned()),
                (RecordKind::Episode, episode.as_str().to_owned()),
                (RecordKind::Authorisation, authorisation.as_str().to_owned()),
            ],
            seen: Vec::new(),
        };
        for (kind, id) in &case.records {
            case.seen.push(store.history(*kind, id).await.expect("history"));
        }
        let version = |case: &Case, i: usize| case.seen[i].last().map_or(0, |r| r.meta().version);
        let command = |case: &Case, op: &Op| -> Command {
            match op {
                Op::Authorisation(t, o) => Command::TransitionAuthorisation {
                    id: authorisation.clone(),
                    expected_version: version(case, 2) + o,
                    transition: t.clone(),
                },
                Op::Episode(t, o) => Command::TransitionEpisode {
                    id: episode.clone(),
                    expected_version: version(case, 1) + o,
                    transition: t.clone(),
                },
                Op::Patient(region, status, o) => Command::UpdatePatient {
                    id: patient.clone(),
                    expected_version: version(case, 0) + o,
                    update: PatientUpdate {
                        region: Some(region.map(|r| RegionCode::parse(r).expect("region"))),
                        vital_status: Some(*status),
                        objects_to_reuse: None,
                        diagnoses: None,
                        ..PatientUpdate::default()
                    },
                    reason: "correction".into(),
                },
                Op::FollowUp(visit_date) => Command::RecordFollowUp(FollowUp {
                    episode_id: episode.clone(),
                    visit_date: *visit_date,
                    efficacy: EfficacyAssessment::Stable,
                    measures: vec![],
                    weight_kg: None,
                    adherence: Adherence::Good,
                }),
                Op::Together(..) => unreachable!("split before"),
            }
        };
        for op in &ops {
            let outcomes = match op {
                Op::Together(a, b) => {
                    let (a, b) = (command(&case, a), command(&case, b));
                    let (a, b) = tokio::join!(run(a), run(b));
                    vec![a, b]
                }
                single => vec![run(command(&case, single)).await],
            };
            let accepted = outcomes.iter().any(Result::is_ok);
            let written = outcomes.iter().filter(|o| o.is_ok()).count() as u32;
            writes.fetch_add(written, std::sync::atomic::Ordering::Relaxed);
            for (i, (kind, id)) in case.records.iter().enumerate() {
                let now = store.history(*kind, id).await.expect("history");
                let before = &case.seen[i];
                prop_assert!(
                    now.len() >= before.len(),
                    "{:?} {} lost versions after {:?}",
                    kind,
                    id,
                    op
                );
                prop_assert_eq!(
                    &now[..before.len()],
                    &before[..],
                    "{:?} {}: a version changed after {:?}",
                    kind,
                    id,
                    op
                );
                for (n, r) in now.iter().enumerate() {
                    prop_assert_eq!(
                        r.meta().version,
                        n as i64 + 1,
                        "{:?} {}: versions numbered with a gap",
                        kind,
                        id
                    );
                }
                if !accepted {
                    prop_assert_eq!(
                        now.len(),
                        before.len(),
                        "{:?} {}: {:?} was refused but wrote",
                        kind,
                        id,
                        outcomes
                    );
                }
                let current = match kind {
                    RecordKind::Patient => store.require::<Patient>(id).await.map(Record::Patient),
                    RecordKind::Episode => store.require::<Episode>(id).await.map(Record::Episode),
                    _ => store.require::<Authorisation>(id).await.map(Record::Authorisation),
                }
                .expect("current version");
                prop_assert_eq!(
                    Some(&current),
                    now.last(),
                    "{:?} {}: current is not the last of history",
                    kind,
                    id
                );
                case.seen[i] = now;
            }
        }
        Ok(())
    };
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..16), |ops| {
            tokio::task::block_in_place(|| handle.block_on(one_case(ops)))
        })
        .expect("history keeps every version");
    let verified = store.verify_audit(None).await.expect("verify");
    assert!(verified.broken.is_none(), "{verified:?}");
    assert_eq!(verified.versions_without_event, 0, "{verified:?}");
    assert!(cases.load(std::sync::atomic::Ordering::Relaxed) >= 48);
    // The sequences went past the first step: writes were accepted, not only refused.
    let writes = writes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(writes >= 32, "{writes} writes accepted");
}

/// A centre belongs to several filières and is listed under each; a version written before
/// centres could (one `filiere`, no `filieres` column) reads back and lists as before.
async fn centres_are_listed_by_any_of_their_filieres_old_versions_included(db: Db) {
    let f = |code: &str| Filiere::parse(code).expect("filiere");
    let mut both = centre(1);
    both.filieres = vec![f("FILNEMUS"), f("MHEMO")];
    for c in [both, centre(2), centre(3)] {
        db.store
            .execute(Command::CreateCentre(c), ctx(None))
            .await
            .expect("create");
    }
    // Centre 3 as a version of the earlier layout: its body names one filière, the column is NULL.
    let id = finess(3);
    let legacy =
        format!(r#"{{"finess":"{id}","name":"Centre 3","centre_type":"CCMR","region":"11","filiere":"FILNEMUS"}}"#);
    let at = "2026-11-01T00:00:00Z";
    raw(
        &db,
        &format!("UPDATE centre_versions SET superseded_at = '{at}' WHERE id = '{id}' AND version = 1"),
    )
    .await
    .expect("supersede");
    raw(
        &db,
        &format!(
            "INSERT INTO centre_versions (id, version, recorded_at, recorded_by, reason, request_id, body, \
             region_code, filiere, centre_type) VALUES ('{id}', 2, '{at}', 'test', 'earlier layout', 'r', \
             '{legacy}', '11', 'FILNEMUS', 'CCMR')"
        ),
    )
    .await
    .expect("a version of the earlier layout");
    let list = |filiere: &str| {
        let filter = observatory_store::CentreFilter {
            region: None,
            filiere: Some(f(filiere)),
        };
        let store = db.store.clone();
        async move {
            let page = observatory_store::PageRequest { size: 50, token: None };
            let p = store.list_centres(&filter, &page).await.expect("list");
            p.items.into_iter().map(|c| c.record.finess).collect::<Vec<_>>()
        }
    };
    assert_eq!(list("MHEMO").await, vec![finess(1), finess(2)]);
    assert_eq!(list("FILNEMUS").await, vec![finess(1), finess(3)]);
    assert!(list("G2M").await.is_empty());
    let old = db
        .store
        .require::<Centre>(id.as_str())
        .await
        .expect("the earlier layout reads back");
    assert_eq!(old.record.filieres, vec![f("FILNEMUS")]);
    assert_eq!(old.meta.version, 2);
}
