//! The application layer, called as a transport would (the web front, the import, `seed`):
//! a `Call` made by hand, a parsed domain request, no gRPC. The same role table, scope rules,
//! input rules and audit trail answer as they do behind the gRPC services.

use observatory_app::{AppError, Call, reference, registry};
use observatory_domain::{
    DomainError,
    access::{Principal, Role, Scope},
    codes::{Filiere, Finess, IdMr, RegionCode, Rpps},
    model::{Centre, CentreType, Patient, Prescriber, RecordId, Sex, YearMonth},
    registration::{Registration, Subject},
};
use observatory_store::{Store, StoreError, StoreOptions};

use crate::helpers::{Backend, TEST_CENTRE, app_of, fresh_database, rpps};
use crate::on_both_backends;

on_both_backends!(
    operations_decide_the_same_whatever_the_way_in,
    a_page_learns_the_next_synthesis_due_without_leaving_a_refusal,
);

fn principal(token_id: &str, role: Role, centres: &[&str], filieres: &[&str]) -> Principal {
    Principal {
        token_id: token_id.into(),
        role,
        scope: Scope::new(
            role,
            centres.iter().map(|c| Finess::parse(c).expect("finess")).collect(),
            filieres.iter().map(|f| Filiere::parse(f).expect("filiere")).collect(),
        )
        .expect("scope"),
    }
}

fn call(p: &Principal, operation: &'static str) -> Call {
    Call::new(p.clone(), operation, uuid::Uuid::now_v7().to_string(), String::new())
}

fn registration(sex: Option<Sex>) -> Registration {
    Registration {
        subject: Subject::IdMr(IdMr::parse("00000000000000004242").expect("idmr")),
        sex,
        birth_year_month: Some(YearMonth::parse("2013-07").expect("month")),
        region: Some(RegionCode::parse("11").expect("region")),
        objects_to_reuse: false,
        diagnoses: Vec::new(),
        cde: Default::default(),
    }
}

fn fields(e: &AppError) -> Vec<String> {
    match e {
        AppError::Store(StoreError::Domain(DomainError::Invalid(v))) => {
            v.as_slice().iter().map(|f| f.field.clone()).collect()
        }
        other => panic!("expected invalid fields, got {other:?}"),
    }
}

async fn operations_decide_the_same_whatever_the_way_in(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    let app = app_of(&store).await;

    // A local process (seed, the command line) holds the whole registry.
    let local = |operation| Call::local("app-layer-test", operation, uuid::Uuid::now_v7().to_string());
    for (finess, name) in [(TEST_CENTRE, "CRMR A"), ("130000011", "CRC B")] {
        reference::create_centre(
            &app,
            &local("CreateCentre"),
            None,
            Centre {
                finess: Finess::parse(finess).expect("finess"),
                name: name.into(),
                centre_type: CentreType::Ccmr,
                region: RegionCode::parse("11").expect("region"),
                filieres: vec![Filiere::parse("MHEMO").expect("filiere")],
            },
        )
        .await
        .expect("a local process creates centres");
    }
    reference::create_prescriber(
        &app,
        &local("CreatePrescriber"),
        None,
        Prescriber {
            rpps: Rpps::parse(&rpps(9)).expect("rpps"),
            specialty: "haematology".into(),
            centre_finess: Finess::parse(TEST_CENTRE).expect("finess"),
        },
    )
    .await
    .expect("prescriber");

    let prescriber = principal("p-a", Role::Prescriber, &[TEST_CENTRE], &[]);
    let elsewhere = principal("p-b", Role::Prescriber, &["130000011"], &[]);
    let analyst = principal("an", Role::Analyst, &[], &["MHEMO"]);

    // The input rules: an IdMR registration needs a sex.
    let refused = registry::register_patient(
        &app,
        &call(&prescriber, "RegisterPatient"),
        Some("k1".into()),
        registration(None),
    )
    .await
    .expect_err("no sex");
    assert_eq!(fields(&refused), ["sex"]);

    // The role table: an analyst may not register, and the refusal is in the trail.
    let denied = registry::register_patient(
        &app,
        &call(&analyst, "RegisterPatient"),
        Some("k2".into()),
        registration(Some(Sex::Male)),
    )
    .await
    .expect_err("analysts register no patient");
    assert!(matches!(denied, AppError::Denied(_)), "{denied:?}");

    // Registered at centre A, read there and audited; not disclosed to centre B.
    let patient = registry::register_patient(
        &app,
        &call(&prescriber, "RegisterPatient"),
        Some("k3".into()),
        registration(Some(Sex::Male)),
    )
    .await
    .expect("register");
    let id = RecordId::from_minted(patient.meta.id.clone());
    let read = registry::get::<Patient>(&app, &call(&prescriber, "GetPatient"), &id)
        .await
        .expect("read at its centre");
    assert_eq!(read.meta, patient.meta);
    let hidden = registry::get::<Patient>(&app, &call(&elsewhere, "GetPatient"), &id)
        .await
        .expect_err("another centre's patient");
    assert!(matches!(hidden, AppError::Denied(_)), "{hidden:?}");
    // The history of reference records for every role (the admin, the analyst); never of a
    // patient-level record under that operation, whatever the caller's scope.
    let admin = principal("ad", Role::Admin, &[], &[]);
    for who in [&admin, &analyst] {
        let centre = registry::history(
            &app,
            &call(who, "GetReferenceHistory"),
            observatory_domain::model::RecordKind::Centre,
            TEST_CENTRE,
        )
        .await
        .expect("a centre's history");
        assert_eq!(centre.len(), 1);
        let patient_history = registry::history(
            &app,
            &call(who, "GetReferenceHistory"),
            observatory_domain::model::RecordKind::Patient,
            id.as_str(),
        )
        .await
        .expect_err("no patient history as reference history");
        assert!(matches!(patient_history, AppError::Denied(_)), "{patient_history:?}");
        let as_grpc = registry::history(
            &app,
            &call(who, "GetHistory"),
            observatory_domain::model::RecordKind::Patient,
            id.as_str(),
        )
        .await
        .expect_err("nor as GetHistory");
        assert!(matches!(as_grpc, AppError::Denied(_)), "{as_grpc:?}");
    }
    let unknown = RecordId::from_minted("01939a2c-0000-7000-8000-000000000000".into());
    let absent = registry::get::<Patient>(&app, &call(&elsewhere, "GetPatient"), &unknown)
        .await
        .expect_err("a patient that does not exist");
    assert_eq!(
        absent.to_string().replace(unknown.as_str(), "ID"),
        hidden.to_string().replace(id.as_str(), "ID")
    );

    // The trail names each decision: the refusals, the registration, the read.
    let events = store
        .audit_events(
            chrono::Utc::now() - chrono::Duration::hours(1),
            chrono::Utc::now() + chrono::Duration::hours(1),
            0,
            1000,
        )
        .await
        .expect("trail");
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| (e.actor.clone(), e.action.clone(), e.reason.clone()))
        .collect();
    for expected in [
        ("analyst:an", "RegisterPatient", "refused: PERMISSION_DENIED"),
        ("prescriber:p-b", "GetPatient", "refused: PERMISSION_DENIED"),
        ("prescriber:p-a", "GetPatient", ""),
    ] {
        assert!(
            seen.iter()
                .any(|(a, o, r)| (a.as_str(), o.as_str(), r.as_str()) == expected),
            "{expected:?} not in {seen:?}"
        );
    }
    assert!(
        seen.iter()
            .any(|(a, o, r)| a == "prescriber:p-a" && o == "RegisterPatient" && r == "RegisterPatient"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(a, o, _)| a == "app-layer-test" && o == "CreateCentre"),
        "a local process is named as the author of its writes: {seen:?}"
    );
    assert!(store.verify_audit(None).await.expect("verify").broken.is_none());
    store.close().await;
}

/// What a page offers is decided without a call: the next synthesis due is given to a caller of
/// the framework's filière, refused to another without a refused operation in the audit trail,
/// whereas the synthesis asked for out of scope is refused and recorded.
async fn a_page_learns_the_next_synthesis_due_without_leaving_a_refusal(backend: Backend) {
    use observatory_analytics::{
        runs::{RunParameters, Runner, SynthesisRequest},
        synthesis::{Language, Target},
    };
    use observatory_app::reports::{self, Reports, SynthesisAsk};
    let (url, dir) = fresh_database(backend).await;
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    observatory_server::seed::seed(
        &app_of(&store).await,
        &observatory_server::seed::SeedOptions {
            patients: 30,
            seed: 3,
            until: chrono::NaiveDate::from_ymd_opt(2026, 10, 31).expect("date"),
            concurrency: 8,
        },
    )
    .await
    .expect("seed");
    let r = Reports::new(Runner::new(store.clone(), dir.path().join("reports")), 10);
    // Concizumab's early access: an MHEMO framework, a synthesis every 6 months from 2023-12-01.
    let subject = Target::Framework("0193a000-0000-7000-8000-000000000002".into());
    let today = chrono::Utc::now().date_naive();
    let mhemo = principal("mhemo", Role::Analyst, &[], &["MHEMO"]);
    let filnemus = principal("filnemus", Role::Analyst, &[], &["FILNEMUS"]);
    let due = reports::synthesis_due(&r, &call(&mhemo, "RunSynthesis"), &subject, today)
        .await
        .expect("due");
    assert_eq!(due.0.to_string(), "2023-12-01");
    let head = store.audit_head().await.expect("head").map(|h| h.seq);
    let refused = reports::synthesis_due(&r, &call(&filnemus, "RunSynthesis"), &subject, today).await;
    assert!(matches!(refused, Err(AppError::Denied(_))), "{refused:?}");
    assert_eq!(
        store.audit_head().await.expect("head").map(|h| h.seq),
        head,
        "a page shown leaves no refused operation"
    );
    let ask = SynthesisAsk {
        parameters: RunParameters {
            period_from: today,
            period_to: today,
            as_of: None,
            threshold: 0,
            csv: Default::default(),
            scope: Default::default(),
            synthesis: Some(SynthesisRequest {
                target: subject.clone(),
                language: Language::Fr,
            }),
            language: Language::En,
        },
        period: None,
    };
    let refused = reports::run_synthesis(&r, &call(&filnemus, "RunSynthesis"), None, ask, today).await;
    assert!(matches!(refused, Err(AppError::Denied(_))), "{refused:?}");
    assert_ne!(
        store.audit_head().await.expect("head").map(|h| h.seq),
        head,
        "a synthesis asked for out of scope is a refused call, recorded"
    );
}
