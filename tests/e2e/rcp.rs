//! The multidisciplinary team meeting (RCP) as the access rules write it: a framework granted
//! on condition of a favourable national RCP takes a declaration only with one.

use observatory_proto::v1 as pb;
use tonic::Code;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(a_framework_requiring_a_national_rcp_takes_declarations_with_a_favourable_one);

async fn a_framework_requiring_a_national_rcp_takes_declarations_with_a_favourable_one(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let framework = app
        .reference
        .create_framework(pb::CreateFrameworkRequest {
            idempotency_key: "fw-risdiplam".into(),
            pathway: pb::Pathway::AtuCohort as i32,
            drug_atc: "M09AX10".into(),
            indication: "5q spinal muscular atrophy, after a favourable national RCP".into(),
            orpha_codes: vec!["70".into()],
            authority: "ANSM".into(),
            decision_reference: "TEST-ATU-RISDIPLAM".into(),
            valid_from: "2026-01-01".into(),
            valid_to: String::new(),
            status: pb::FrameworkStatus::Granted as i32,
            protocol_type: pb::ProtocolType::PutRd as i32,
            protocol_version: "1".into(),
            follow_up_months: 6,
            source: "test".into(),
            confirmed: false,
            requires_national_rcp: true,
        })
        .await
        .expect("framework")
        .into_inner();
    assert!(
        framework.requires_national_rcp,
        "the condition is part of the framework"
    );
    let cohort = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: "cohort-risdiplam".into(),
            name: "Risdiplam cohort ATU".into(),
            filiere: "FILNEMUS".into(),
            pathway: pb::Pathway::AtuCohort as i32,
            drug_atc: "M09AX10".into(),
            orpha_codes: vec!["70".into()],
            framework_id: framework.meta.expect("meta").id,
            follow_up_months: 0,
        })
        .await
        .expect("cohort")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let patient = app.patient(60).await.meta.expect("meta").id;
    let declare = |rcp: Option<pb::Rcp>| pb::DeclareEpisodeRequest {
        idempotency_key: format!(
            "sma-{}",
            rcp.as_ref()
                .map_or("none".to_owned(), |r| format!("{}-{}", r.level, r.opinion))
        ),
        patient_id: patient.clone(),
        cohort_id: cohort.clone(),
        pathway: pb::Pathway::AtuCohort as i32,
        indication_orpha_code: "70".into(),
        prescriber_rpps: rpps.clone(),
        request_date: "2026-02-02".into(),
        rcp,
        ..Default::default()
    };
    let rcp = |level: pb::RcpLevel, opinion: pb::RcpOpinion| pb::Rcp {
        date: "2026-01-28".into(),
        opinion: opinion as i32,
        level: level as i32,
    };
    let before = app.row_count().await;
    for (given, missing) in [
        (None, "no RCP opinion is recorded"),
        (
            Some(rcp(pb::RcpLevel::Local, pb::RcpOpinion::Favourable)),
            "the RCP recorded is a local one",
        ),
        (
            Some(rcp(pb::RcpLevel::Unspecified, pb::RcpOpinion::Favourable)),
            "of no stated level",
        ),
        (
            Some(rcp(pb::RcpLevel::National, pb::RcpOpinion::Unfavourable)),
            "opinion is UNFAVOURABLE",
        ),
        (
            Some(rcp(pb::RcpLevel::National, pb::RcpOpinion::Deferred)),
            "opinion is DEFERRED",
        ),
    ] {
        let err = app.registry.declare_episode(declare(given)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains("TEST-ATU-RISDIPLAM")
                && err.message().contains("favourable opinion of a national RCP")
                && err.message().contains(missing),
            "the refusal says what the framework requires and what is missing: {}",
            err.message()
        );
    }
    assert_eq!(
        app.row_count().await,
        before,
        "nothing of a refused declaration is stored"
    );
    let declared = app
        .registry
        .declare_episode(declare(Some(rcp(
            pb::RcpLevel::National,
            pb::RcpOpinion::FavourableWithConditions,
        ))))
        .await
        .expect("declared with a favourable national RCP")
        .into_inner()
        .episode
        .expect("episode");
    let recorded = declared.rcp.expect("the RCP is kept on the episode");
    assert_eq!(recorded.level, pb::RcpLevel::National as i32);
    assert_eq!(recorded.opinion, pb::RcpOpinion::FavourableWithConditions as i32);

    // The shipped risdiplam cohort ATU carries the condition.
    let shipped = app
        .reference
        .get_framework(pb::GetFrameworkRequest {
            id: "0193a000-0000-7000-8000-000000000003".into(),
        })
        .await
        .expect("shipped framework")
        .into_inner();
    assert!(shipped.requires_national_rcp);
    app.stop().await;
}
