//! Adverse events as pharmacovigilance cases: the ICH E2B(R3) fields a regional centre needs,
//! checked together.

use observatory_proto::v1 as pb;

use crate::corrections::started_aac;
use crate::helpers::{Backend, scoped_token, spawn_app, violated_fields};
use crate::on_both_backends;

on_both_backends!(
    an_adverse_event_carries_the_e2b_case_fields_checked_together,
    serious_events_not_declared_are_on_the_worklist_until_declared,
);

async fn an_adverse_event_carries_the_e2b_case_fields_checked_together(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let (episode, _, _) = started_aac(&mut app, &rpps, 95).await;
    let event = |key: &str, details: Option<pb::CaseDetails>| pb::RecordAdverseEventRequest {
        idempotency_key: key.into(),
        episode_id: episode.clone(),
        onset_date: "2026-03-02".into(),
        meddra_pt_code: "10019211".into(),
        meddra_soc_code: String::new(),
        serious: true,
        outcome: pb::AeOutcome::Recovered as i32,
        causality: pb::Causality::PossiblyRelated as i32,
        pv_declaration_date: String::new(),
        pv_reference: String::new(),
        case_details: details,
    };
    use pb::SeriousnessCriterion as C;
    let err = app
        .registry
        .record_adverse_event(event("no-criteria", None))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["case_details.seriousness"],
        "a serious event names its criteria"
    );
    let before = app.row_count().await;
    let bad = pb::CaseDetails {
        seriousness: vec![C::Death as i32, C::Death as i32],
        end_date: "2026-03-01".into(),
        action_taken: pb::DrugAction::DoseNotChanged as i32,
        dechallenge: pb::ChallengeResult::Positive as i32,
        batch: "L".repeat(36),
        narrative: "n".repeat(2001),
        ..Default::default()
    };
    let err = app
        .registry
        .record_adverse_event(event("bad", Some(bad)))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["case_details.batch", "case_details.narrative"],
        "bounds first, each field named"
    );
    let bad = pb::CaseDetails {
        seriousness: vec![C::Death as i32, C::Death as i32],
        end_date: "2026-03-01".into(),
        action_taken: pb::DrugAction::DoseNotChanged as i32,
        dechallenge: pb::ChallengeResult::Positive as i32,
        ..Default::default()
    };
    let err = app
        .registry
        .record_adverse_event(event("bad-2", Some(bad)))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "case_details.seriousness[1]",
            "outcome",
            "case_details.end_date",
            "case_details.dechallenge"
        ],
        "a criterion twice, death without a fatal outcome, an end before the onset, a dechallenge with the dose unchanged"
    );
    let fatal = pb::RecordAdverseEventRequest {
        outcome: pb::AeOutcome::Fatal as i32,
        ..event(
            "fatal",
            Some(pb::CaseDetails {
                seriousness: vec![C::Hospitalisation as i32],
                ..Default::default()
            }),
        )
    };
    let err = app.registry.record_adverse_event(fatal).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["case_details.seriousness"],
        "a fatal event names DEATH"
    );
    assert_eq!(app.row_count().await, before, "nothing of a refused event is stored");

    let case = pb::CaseDetails {
        seriousness: vec![C::Hospitalisation as i32, C::LifeThreatening as i32],
        end_date: String::new(),
        meddra_llt_code: "10019212".into(),
        action_taken: pb::DrugAction::Withdrawn as i32,
        dechallenge: pb::ChallengeResult::Positive as i32,
        rechallenge: pb::ChallengeResult::NotDone as i32,
        suspect_dosage: Some(pb::Dosage {
            dose: 3.0,
            unit: "mg/kg".into(),
            frequency: "weekly".into(),
            route: pb::Route::Subcutaneous as i32,
        }),
        batch: "LOT-24A17".into(),
        reporter: pb::ReporterQualification::Physician as i32,
        narrative: "Haemarthrosis of the knee three weeks after the first dose; admitted, drug stopped.".into(),
        off_label_use: false,
    };
    let recorded = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            outcome: pb::AeOutcome::Recovering as i32,
            ..event("valid", Some(case.clone()))
        })
        .await
        .expect("a valid case")
        .into_inner();
    let id = recorded.meta.as_ref().expect("meta").id.clone();
    let read = app
        .registry
        .get_adverse_event(pb::GetRequest { id: id.clone() })
        .await
        .expect("read back")
        .into_inner();
    assert_eq!(read.case_details.as_ref(), Some(&case), "every case field is kept");

    // Recovered later: the outcome and the end of the reaction completed, with a reason.
    let recovered = pb::CaseDetails {
        end_date: "2026-03-20".into(),
        ..case.clone()
    };
    let err = app
        .registry
        .update_adverse_event(pb::UpdateAdverseEventRequest {
            id: id.clone(),
            expected_version: 1,
            reason: "recovery reported at the visit".into(),
            case_details: Some(recovered.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["case_details.end_date"],
        "a reaction still recovering has not ended"
    );
    let done = app
        .registry
        .update_adverse_event(pb::UpdateAdverseEventRequest {
            id: id.clone(),
            expected_version: 1,
            reason: "recovery reported at the visit".into(),
            outcome: pb::AeOutcome::Recovered as i32,
            case_details: Some(recovered.clone()),
            ..Default::default()
        })
        .await
        .expect("completed")
        .into_inner();
    assert_eq!(done.case_details, Some(recovered));
    assert_eq!(done.outcome, pb::AeOutcome::Recovered as i32);

    // A non-serious event needs no case fields.
    app.registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            serious: false,
            ..event("mild", None)
        })
        .await
        .expect("a non-serious event");
    app.stop().await;
}

async fn serious_events_not_declared_are_on_the_worklist_until_declared(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let (episode, _, _) = started_aac(&mut app, &rpps, 96).await;
    let event = |key: &str, serious: bool, declared: bool| pb::RecordAdverseEventRequest {
        idempotency_key: key.into(),
        episode_id: episode.clone(),
        onset_date: "2026-03-02".into(),
        meddra_pt_code: "10019211".into(),
        serious,
        outcome: pb::AeOutcome::Recovering as i32,
        causality: pb::Causality::PossiblyRelated as i32,
        pv_declaration_date: if declared { "2026-03-04".into() } else { String::new() },
        pv_reference: if declared { "CRPV-1".into() } else { String::new() },
        case_details: serious.then(|| pb::CaseDetails {
            seriousness: vec![pb::SeriousnessCriterion::Hospitalisation as i32],
            ..Default::default()
        }),
        ..Default::default()
    };
    let undeclared = app
        .registry
        .record_adverse_event(event("serious", true, false))
        .await
        .expect("serious")
        .into_inner();
    app.registry
        .record_adverse_event(event("mild", false, false))
        .await
        .expect("mild");
    app.registry
        .record_adverse_event(event("declared", true, true))
        .await
        .expect("declared");
    let worklist = |app: &crate::helpers::TestApp, secret: Option<&str>| {
        let mut client = match secret {
            Some(s) => app.registry_as(s),
            None => app.registry.clone(),
        };
        async move {
            client
                .get_worklist(pb::GetWorklistRequest { within_days: 30 })
                .await
                .expect("worklist")
                .into_inner()
                .undeclared_serious_events
        }
    };
    let listed = worklist(&app, None).await;
    let id = undeclared.meta.as_ref().expect("meta").id.clone();
    assert_eq!(
        listed
            .iter()
            .map(|x| x
                .adverse_event
                .as_ref()
                .expect("event")
                .meta
                .as_ref()
                .expect("meta")
                .id
                .clone())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&id),
        "only the serious event with no declaration"
    );
    assert_eq!(
        listed[0]
            .episode
            .as_ref()
            .expect("episode")
            .meta
            .as_ref()
            .expect("meta")
            .id,
        episode
    );
    assert!(listed[0].days_since_onset > 0);
    let outsider = scoped_token(
        &app.store,
        observatory_domain::access::Role::Prescriber,
        &["130000011"],
        &[],
    )
    .await;
    assert!(
        worklist(&app, Some(&outsider)).await.is_empty(),
        "another centre's worklist shows none"
    );

    app.registry
        .update_adverse_event(pb::UpdateAdverseEventRequest {
            id,
            expected_version: 1,
            reason: "declared to the regional pharmacovigilance centre".into(),
            pv_declaration_date: "2026-03-05".into(),
            pv_reference: "CRPV-2".into(),
            ..Default::default()
        })
        .await
        .expect("declared");
    assert!(worklist(&app, None).await.is_empty(), "declared: off the worklist");
    app.stop().await;
}
