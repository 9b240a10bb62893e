//! The multidisciplinary team meeting (RCP) as the access rules write it: a framework granted
//! on condition of a favourable national RCP takes a declaration only with one; a patient's case
//! is put to an RCP, its opinion recorded (or deferred), and the treatments declared on it link
//! to it.

use observatory_proto::v1 as pb;
use tonic::Code;

use crate::helpers::{Backend, TEST_CENTRE, spawn_app, violated_fields};
use crate::on_both_backends;

on_both_backends!(
    a_framework_requiring_a_national_rcp_takes_declarations_with_a_favourable_one,
    a_case_put_to_an_rcp_gets_its_opinion_and_the_treatment_declared_on_it_links_to_it,
);

async fn a_framework_requiring_a_national_rcp_takes_declarations_with_a_favourable_one(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = risdiplam_cohort(&mut app).await;
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

/// A risdiplam cohort ATU under a framework that requires a favourable national RCP.
async fn risdiplam_cohort(app: &mut crate::helpers::TestApp) -> String {
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
            synthesis_months: 0,
        })
        .await
        .expect("framework")
        .into_inner();
    assert!(
        framework.requires_national_rcp,
        "the condition is part of the framework"
    );
    app.manager
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
        .id
}

/// `RequestRcpReview` and `RecordRcpOpinion`: a case put to FILNEMUS's national RCP, deferred
/// then given a favourable opinion with conditions, a treatment declared on it (the framework's
/// condition met by the review, the episode linked to it); every step a version of the patient
/// with its reason; what does not fit refused by field or state.
async fn a_case_put_to_an_rcp_gets_its_opinion_and_the_treatment_declared_on_it_links_to_it(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = risdiplam_cohort(&mut app).await;
    let patient = app.patient(61).await.meta.expect("meta").id;
    let request = |version: i64, level: pb::RcpLevel, filiere: &str, drug: &str| pb::RequestRcpReviewRequest {
        patient_id: patient.clone(),
        expected_version: version,
        level: level as i32,
        filiere: filiere.into(),
        centre_finess: TEST_CENTRE.into(),
        drug_atc: drug.into(),
        indication_orpha_code: "70".into(),
        requested_date: "2026-01-20".into(),
    };
    let err = app
        .registry
        .request_rcp_review(request(1, pb::RcpLevel::National, "", "M09AX10"))
        .await
        .expect_err("a national RCP names its filière");
    assert_eq!(violated_fields(&err), ["filiere"]);
    let asked = app
        .registry
        .request_rcp_review(request(1, pb::RcpLevel::National, "FILNEMUS", "M09AX10"))
        .await
        .expect("the case is put to the national RCP")
        .into_inner();
    assert_eq!(asked.meta.as_ref().expect("meta").version, 2);
    let review = asked.rcp_reviews[0].clone();
    assert_eq!(review.opinion, pb::RcpOpinion::Unspecified as i32, "awaited");
    assert_eq!(
        (review.filiere.as_str(), review.drug_atc.as_str()),
        ("FILNEMUS", "M09AX10")
    );
    let stale = app
        .registry
        .request_rcp_review(request(1, pb::RcpLevel::Local, "", "M09AX10"))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);

    let declare = |key: &str, review_id: &str, rcp: Option<pb::Rcp>| pb::DeclareEpisodeRequest {
        idempotency_key: key.into(),
        patient_id: patient.clone(),
        cohort_id: cohort.clone(),
        pathway: pb::Pathway::AtuCohort as i32,
        indication_orpha_code: "70".into(),
        prescriber_rpps: rpps.clone(),
        request_date: "2026-02-16".into(),
        rcp,
        rcp_review_id: review_id.into(),
        ..Default::default()
    };
    let err = app
        .registry
        .declare_episode(declare("awaited", &review.id, None))
        .await
        .expect_err("the opinion is awaited");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("awaits its opinion"), "{}", err.message());

    let opinion = |version: i64, date: &str, opinion: pb::RcpOpinion, conditions: &str| pb::RecordRcpOpinionRequest {
        patient_id: patient.clone(),
        expected_version: version,
        review_id: review.id.clone(),
        meeting_date: date.into(),
        opinion: opinion as i32,
        conditions: conditions.into(),
    };
    app.registry
        .record_rcp_opinion(opinion(2, "2026-01-27", pb::RcpOpinion::Deferred, ""))
        .await
        .expect("deferred to the next meeting");
    let err = app
        .registry
        .record_rcp_opinion(opinion(3, "2026-02-10", pb::RcpOpinion::FavourableWithConditions, ""))
        .await
        .expect_err("conditions are said");
    assert_eq!(violated_fields(&err), ["conditions"]);
    let decided = app
        .registry
        .record_rcp_opinion(opinion(
            3,
            "2026-02-10",
            pb::RcpOpinion::FavourableWithConditions,
            "HFMSE and RULM every 6 months",
        ))
        .await
        .expect("the opinion")
        .into_inner();
    assert_eq!(decided.rcp_reviews[0].meeting_date, "2026-02-10");
    let again = app
        .registry
        .record_rcp_opinion(opinion(4, "2026-03-10", pb::RcpOpinion::Unfavourable, ""))
        .await
        .expect_err("decided once");
    assert_eq!(again.code(), Code::FailedPrecondition);

    // A local review on another drug does not meet the framework's condition, and is not for it.
    let other = app
        .registry
        .request_rcp_review(request(4, pb::RcpLevel::Local, "", "B02BX07"))
        .await
        .expect("a local review")
        .into_inner();
    let local = other.rcp_reviews[1].id.clone();
    app.registry
        .record_rcp_opinion(pb::RecordRcpOpinionRequest {
            review_id: local.clone(),
            ..opinion(5, "2026-02-01", pb::RcpOpinion::Favourable, "")
        })
        .await
        .expect("its opinion");
    let err = app
        .registry
        .declare_episode(pb::DeclareEpisodeRequest {
            request_date: "2026-02-20".into(),
            ..declare("other-drug", &local, None)
        })
        .await
        .expect_err("a review of another drug");
    assert_eq!(violated_fields(&err), ["rcp_review_id"]);

    let both = app
        .registry
        .declare_episode(declare(
            "both",
            &review.id,
            Some(pb::Rcp {
                date: "2026-02-10".into(),
                opinion: pb::RcpOpinion::Favourable as i32,
                level: pb::RcpLevel::National as i32,
            }),
        ))
        .await
        .expect_err("the review or the opinion, not both");
    assert_eq!(violated_fields(&both), ["rcp"]);
    let unknown = app
        .registry
        .declare_episode(declare("unknown", "0193a000-0000-7000-8000-0000000000ee", None))
        .await
        .expect_err("not a review of this patient");
    assert_eq!(violated_fields(&unknown), ["rcp_review_id"]);
    let episode = app
        .registry
        .declare_episode(declare("reviewed", &review.id, None))
        .await
        .expect("declared on the national RCP's favourable opinion: the framework's condition is met")
        .into_inner()
        .episode
        .expect("episode");
    assert_eq!(episode.rcp_review_id, review.id, "the treatment links to the review");
    let rcp = episode.rcp.expect("the review's opinion on the episode");
    assert_eq!(
        (rcp.date.as_str(), rcp.opinion, rcp.level),
        (
            "2026-02-10",
            pb::RcpOpinion::FavourableWithConditions as i32,
            pb::RcpLevel::National as i32
        )
    );

    let reasons = app.patient_history_reasons(&patient).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("RequestRcpReview: national RCP review")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("favourable with conditions")),
        "{reasons:?}"
    );
    app.stop().await;
}
