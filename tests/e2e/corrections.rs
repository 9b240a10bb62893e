//! Corrections of treatment records: episodes, authorisations and visits corrected with a
//! reason kept in history, the records around them kept consistent.

use observatory_domain::access::Role;
use observatory_proto::v1::{self as pb, transition_authorisation_request as ta, transition_episode_request as te};
use tonic::Code;

use crate::helpers::{Backend, TestApp, rpps, scoped_token, spawn_app, violated_fields};
use crate::on_both_backends;

on_both_backends!(
    episodes_authorisations_and_visits_are_corrected_with_a_reason_in_history,
    the_end_of_a_replaced_episode_moves_with_its_successors_request,
    two_records_of_one_person_are_merged_and_counted_once,
);

fn meta(m: &Option<pb::RecordMeta>) -> (String, i64) {
    let m = m.as_ref().expect("meta");
    (m.id.clone(), m.version)
}

async fn episode(app: &mut TestApp, id: &str) -> pb::Episode {
    app.registry
        .get_episode(pb::GetRequest { id: id.into() })
        .await
        .expect("episode")
        .into_inner()
}

/// Reasons of every version of a record, oldest first.
async fn reasons(app: &mut TestApp, kind: pb::RecordKind, id: &str) -> Vec<String> {
    app.registry
        .get_history(pb::GetHistoryRequest {
            kind: kind as i32,
            id: id.into(),
        })
        .await
        .expect("history")
        .into_inner()
        .versions
        .iter()
        .map(|h| {
            use pb::history_entry::Record as R;
            let m = match h.record.as_ref().expect("record") {
                R::Episode(x) => x.meta.as_ref(),
                R::Authorisation(x) => x.meta.as_ref(),
                R::FollowUp(x) => x.meta.as_ref(),
                other => panic!("unexpected {other:?}"),
            };
            m.expect("meta").reason.clone()
        })
        .collect()
}

/// A granted and started AAC (request 2026-01-12, grant 2026-01-15, first administration
/// 2026-01-20) with a visit on 2026-02-20: (episode, authorisation, visit).
pub(crate) async fn started_aac(app: &mut TestApp, rpps: &str, n: u32) -> (String, String, String) {
    let cohort = app.aac_cohort().await.meta.expect("meta").id;
    let patient = app.patient(n).await.meta.expect("meta").id;
    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&patient, &cohort, rpps, &format!("fix-{n}")))
        .await
        .expect("declare")
        .into_inner();
    let episode = declared.episode.expect("episode").meta.expect("meta").id;
    let auth = declared.authorisation.expect("authorisation").meta.expect("meta").id;
    app.registry
        .transition_authorisation(pb::TransitionAuthorisationRequest {
            id: auth.clone(),
            expected_version: 1,
            transition: Some(ta::Transition::Grant(ta::Grant {
                decision_date: "2026-01-15".into(),
                valid_from: "2026-01-15".into(),
                valid_to: "2027-01-14".into(),
                reference: "AAC-2026-000900".into(),
            })),
        })
        .await
        .expect("grant");
    app.registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode.clone(),
            expected_version: 1,
            transition: Some(te::Transition::Initiate(te::Initiate {
                first_administration_date: "2026-01-20".into(),
                dosage: None,
            })),
        })
        .await
        .expect("initiate");
    let visit = app
        .registry
        .record_follow_up(pb::RecordFollowUpRequest {
            idempotency_key: format!("visit-{n}"),
            episode_id: episode.clone(),
            visit_date: "2026-02-20".into(),
            efficacy: pb::EfficacyAssessment::Improved as i32,
            measures: vec![pb::Measure {
                code: "ABR".into(),
                value: 14.0,
            }],
            weight_kg: 62.0,
            adherence: pb::Adherence::Good as i32,
        })
        .await
        .expect("visit")
        .into_inner();
    (episode, auth, visit.meta.expect("meta").id)
}

async fn episodes_authorisations_and_visits_are_corrected_with_a_reason_in_history(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (finess, first_prescriber) = app.centre_and_prescriber().await;
    app.reference
        .create_prescriber(pb::CreatePrescriberRequest {
            idempotency_key: "prescriber-2".into(),
            rpps: rpps(2),
            specialty: "haematology".into(),
            centre_finess: finess,
        })
        .await
        .expect("second prescriber");
    let (episode_id, auth_id, visit_id) = started_aac(&mut app, &first_prescriber, 90).await;
    assert_eq!(
        episode(&mut app, &episode_id).await.status,
        pb::EpisodeStatus::Ongoing as i32
    );

    // The authorisation: its reference and decision as ANSM recorded them. The episode's copy
    // of the decision date follows in the same commit.
    let auth_fix = |version: i64| pb::UpdateAuthorisationRequest {
        id: auth_id.clone(),
        expected_version: version,
        reason: "decision date and reference as on the ANSM notification".into(),
        reference: Some("AAC-2026-000901".into()),
        submitted_date: None,
        decision_date: Some("2026-01-14".into()),
        valid_from: Some("2026-01-14".into()),
        valid_to: Some("2027-01-13".into()),
    };
    let err = app
        .registry
        .update_authorisation(pb::UpdateAuthorisationRequest {
            valid_from: Some("2026-01-21".into()),
            decision_date: None,
            ..auth_fix(2)
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["valid_from"],
        "the first administration stays covered"
    );
    let err = app
        .registry
        .update_authorisation(pb::UpdateAuthorisationRequest {
            valid_to: Some("2027-01-14".into()),
            valid_from: Some("2026-01-10".into()),
            decision_date: Some("2026-01-11".into()),
            ..auth_fix(2)
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["decision_date", "valid_to"],
        "decided before it was filed; an AAC lasts at most a year"
    );
    let fixed = app
        .registry
        .update_authorisation(auth_fix(2))
        .await
        .expect("authorisation corrected")
        .into_inner();
    assert_eq!(fixed.reference, "AAC-2026-000901");
    assert_eq!(
        fixed.status,
        pb::AuthorisationStatus::Granted as i32,
        "its state is kept"
    );
    let e = episode(&mut app, &episode_id).await;
    assert_eq!(e.decision_date, "2026-01-14");
    assert_eq!(meta(&e.meta).1, 4);
    let stale = app.registry.update_authorisation(auth_fix(2)).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let same = app.registry.update_authorisation(auth_fix(3)).await.unwrap_err();
    assert_eq!(
        same.code(),
        Code::FailedPrecondition,
        "nothing changes: nothing written"
    );
    let why = reasons(&mut app, pb::RecordKind::Authorisation, &auth_id).await;
    assert!(
        why.last().expect("a version").ends_with("as on the ANSM notification"),
        "{why:?}"
    );

    // The episode: dosage, prescriber, indication, first administration.
    let fix = |version: i64| pb::UpdateEpisodeRequest {
        id: episode_id.clone(),
        expected_version: version,
        reason: "prescription re-read: second haematologist, von Willebrand type 3".into(),
        request_date: None,
        first_administration_date: Some("2026-01-18".into()),
        end_date: None,
        dosage: Some(pb::Dosage {
            dose: 3.0,
            unit: "mg/kg".into(),
            frequency: "weekly".into(),
            route: pb::Route::Subcutaneous as i32,
        }),
        prescriber_rpps: Some(rpps(2)),
        indication_orpha_code: Some("98879".into()),
    };
    let before = app.row_count().await;
    let err = app
        .registry
        .update_episode(pb::UpdateEpisodeRequest {
            request_date: Some("2026-01-13".into()),
            end_date: Some("2026-03-01".into()),
            indication_orpha_code: Some("166024".into()),
            ..fix(4)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&err),
        ["indication_orpha_code"],
        "a code not in force is refused before the rules of the record"
    );
    let err = app
        .registry
        .update_episode(pb::UpdateEpisodeRequest {
            request_date: Some("2026-01-13".into()),
            end_date: Some("2026-03-01".into()),
            ..fix(4)
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["end_date"],
        "an ongoing treatment has no end to correct"
    );
    let err = app
        .registry
        .update_episode(pb::UpdateEpisodeRequest {
            request_date: Some("2026-01-13".into()),
            ..fix(4)
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["request_date"],
        "requested after its authorisation was filed"
    );
    let err = app
        .registry
        .update_episode(pb::UpdateEpisodeRequest {
            prescriber_rpps: Some(rpps(3)),
            ..fix(4)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "an undeclared prescriber");
    assert_eq!(
        app.row_count().await,
        before,
        "nothing of a refused correction is stored"
    );
    let fixed = app
        .registry
        .update_episode(fix(4))
        .await
        .expect("episode corrected")
        .into_inner();
    assert_eq!(fixed.prescriber_rpps, rpps(2));
    assert_eq!(fixed.indication_orpha_code, "98879");
    assert_eq!(fixed.first_administration_date, "2026-01-18");
    assert_eq!(fixed.dosage.as_ref().map(|d| d.dose), Some(3.0));
    assert_eq!(fixed.status, pb::EpisodeStatus::Ongoing as i32);
    let why = reasons(&mut app, pb::RecordKind::Episode, &episode_id).await;
    assert_eq!(why.len(), 5);
    assert!(why[4].ends_with("von Willebrand type 3"), "{why:?}");

    // A visit: moved before the first administration it is the baseline, and the episode is
    // initiated again; moved back, ongoing again. Measures replaced, the weight cleared.
    let visit_fix = |version: i64, date: &str| pb::UpdateFollowUpRequest {
        id: visit_id.clone(),
        expected_version: version,
        reason: "visit date as in the hospital record".into(),
        visit_date: Some(date.into()),
        efficacy: 0,
        measures: Some(pb::MeasureList {
            measures: vec![pb::Measure {
                code: "ABR".into(),
                value: 3.0,
            }],
        }),
        weight_kg: Some(0.0),
        adherence: 0,
    };
    let err = app
        .registry
        .update_follow_up(pb::UpdateFollowUpRequest {
            measures: Some(pb::MeasureList {
                measures: vec![pb::Measure {
                    code: "ABR".into(),
                    value: -1.0,
                }],
            }),
            ..visit_fix(1, "2025-09-01")
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["visit_date", "measures[0].value"]);
    let moved = app
        .registry
        .update_follow_up(visit_fix(1, "2026-01-10"))
        .await
        .expect("visit corrected")
        .into_inner();
    assert_eq!(moved.weight_kg, 0.0, "0 clears the weight");
    assert_eq!(moved.measures.len(), 1);
    assert_eq!(moved.measures[0].value, 3.0);
    assert_eq!(
        moved.efficacy,
        pb::EfficacyAssessment::Improved as i32,
        "unspecified: unchanged"
    );
    assert_eq!(
        episode(&mut app, &episode_id).await.status,
        pb::EpisodeStatus::Initiated as i32
    );
    app.registry
        .update_follow_up(visit_fix(2, "2026-02-21"))
        .await
        .expect("moved back");
    let e = episode(&mut app, &episode_id).await;
    assert_eq!(e.status, pb::EpisodeStatus::Ongoing as i32);
    let why = reasons(&mut app, pb::RecordKind::Episode, &episode_id).await;
    assert!(why.last().expect("version").contains(&visit_id), "{why:?}");

    // Outside the caller's scope: refused as if it did not exist.
    let outsider = scoped_token(&app.store, Role::Prescriber, &["130000011"], &[]).await;
    let err = app.registry_as(&outsider).update_episode(fix(7)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = app
        .registry_as(&outsider)
        .update_follow_up(visit_fix(3, "2026-02-22"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Analysts read reports; they correct nothing.
    let analyst = scoped_token(&app.store, Role::Analyst, &[], &["MHEMO"]).await;
    let err = app
        .registry_as(&analyst)
        .update_authorisation(auth_fix(3))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    app.stop().await;
}

async fn the_end_of_a_replaced_episode_moves_with_its_successors_request(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, prescriber) = app.centre_and_prescriber().await;
    let (first, _, _) = started_aac(&mut app, &prescriber, 91).await;
    let off_label = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: "cohort-off".into(),
            name: "Emicizumab off-label, von Willebrand".into(),
            filiere: "MHEMO".into(),
            pathway: pb::Pathway::OffLabel as i32,
            drug_atc: "B02BX06".into(),
            orpha_codes: vec!["98878".into()],
            framework_id: String::new(),
            follow_up_months: 6,
        })
        .await
        .expect("cohort")
        .into_inner();
    let patient = episode(&mut app, &first).await.patient_id;
    let mut request = app.aac_declaration(&patient, &meta(&off_label.meta).0, &prescriber, "second");
    request.pathway = pb::Pathway::OffLabel as i32;
    request.authorisation = None;
    request.request_date = "2026-03-01".into();
    request.previous_episode_id = first.clone();
    request.previous_episode_version = 3;
    request.off_label = Some(pb::OffLabelJustification {
        axes: vec![pb::OffLabelAxis::Indication as i32],
        evidence_reference: "PMID:12345678".into(),
    });
    let second = app
        .registry
        .declare_episode(request)
        .await
        .expect("switch")
        .into_inner();
    let second = meta(&second.episode.expect("episode").meta).0;

    let fix = |date: &str| pb::UpdateEpisodeRequest {
        id: second.clone(),
        expected_version: 1,
        reason: "request dated from the prescription".into(),
        request_date: Some(date.into()),
        ..Default::default()
    };
    let err = app
        .registry
        .update_episode(pb::UpdateEpisodeRequest {
            end_date: Some("2026-03-02".into()),
            id: first.clone(),
            expected_version: 4,
            ..fix("2026-03-01")
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["end_date"],
        "a switch's end is its successor's request"
    );
    let err = app.registry.update_episode(fix("2026-01-19")).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["request_date"],
        "before the replaced treatment started"
    );
    let fixed = app
        .registry
        .update_episode(fix("2026-02-25"))
        .await
        .expect("corrected")
        .into_inner();
    assert_eq!(fixed.request_date, "2026-02-25");
    let replaced = episode(&mut app, &first).await;
    assert_eq!(replaced.status, pb::EpisodeStatus::Switched as i32);
    assert_eq!(
        replaced.end_date, "2026-02-25",
        "the replaced treatment ends where this one starts"
    );
    let why = reasons(&mut app, pb::RecordKind::Episode, &first).await;
    assert!(why.last().expect("version").contains(&second), "{why:?}");
    app.stop().await;
}

/// `MergePatients`: a patient registered with an IdMR at one time and by identity at another is
/// one person: the identity record merged into the IdMR one takes nothing more, its treatment,
/// authorisation, RCP review and diagnosis move to the kept record with the merge in history and
/// the audit trail; the merged record stays readable, leaves the lists, names the kept one to a
/// new registration; reports count the person once. Records that disagree on sex are refused, a
/// prescriber may not merge, a record merged is not merged again.
async fn two_records_of_one_person_are_merged_and_counted_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (finess, rpps) = app.centre_and_prescriber().await;
    let (episode_a, _, _) = started_aac(&mut app, &rpps, 70).await;
    let kept = episode(&mut app, &episode_a).await.patient_id;
    // The same person registered again by identity (an HMAC pseudonym), treated with another drug.
    let identity = pb::RegisterPatientRequest {
        idempotency_key: "by-identity".into(),
        subject: Some(pb::register_patient_request::Subject::Identity(pb::Identity {
            last_name: "Dupont".into(),
            first_name: "Jean".into(),
            birth_date: "2010-05-14".into(),
            sex: pb::Sex::Male as i32,
        })),
        region_code: "11".into(),
        diagnoses: vec![pb::Diagnosis {
            orpha_code: "98879".into(),
            status: pb::DiagnosisStatus::Probable as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let merged = app
        .registry
        .register_patient(identity.clone())
        .await
        .expect("registered by identity")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let common_law = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: "emicizumab-cl".into(),
            name: "Emicizumab, common law".into(),
            filiere: "MHEMO".into(),
            pathway: pb::Pathway::CommonLaw as i32,
            drug_atc: "B02BX06".into(),
            orpha_codes: vec!["98878".into(), "98879".into()],
            framework_id: String::new(),
            follow_up_months: 6,
        })
        .await
        .expect("cohort")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let mut declaration = app.aac_declaration(&merged, &common_law, &rpps, "by-identity-1");
    declaration.pathway = pb::Pathway::CommonLaw as i32;
    declaration.indication_orpha_code = "98879".into();
    declaration.authorisation = None;
    let episode_b = app
        .registry
        .declare_episode(declaration)
        .await
        .expect("declared on the identity record")
        .into_inner()
        .episode
        .expect("episode")
        .meta
        .expect("meta")
        .id;
    app.registry
        .request_rcp_review(pb::RequestRcpReviewRequest {
            patient_id: merged.clone(),
            expected_version: 1,
            level: pb::RcpLevel::Local as i32,
            centre_finess: finess.clone(),
            drug_atc: "B02BX06".into(),
            requested_date: "2026-01-05".into(),
            ..Default::default()
        })
        .await
        .expect("an RCP review on the identity record");
    // A third record, of a woman: not the same person.
    let woman = app
        .registry
        .register_patient(pb::RegisterPatientRequest {
            sex: pb::Sex::Female as i32,
            ..app.patient_request(71)
        })
        .await
        .expect("another person")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    // Treated in a cohort of the filière: within the data manager's reach.
    let mut declaration = app.aac_declaration(&woman, &common_law, &rpps, "woman-1");
    declaration.pathway = pb::Pathway::CommonLaw as i32;
    declaration.authorisation = None;
    app.registry.declare_episode(declaration).await.expect("her treatment");

    let merge = |kept_version: i64, merged_id: &str, merged_version: i64| pb::MergePatientsRequest {
        kept_id: kept.clone(),
        kept_version,
        merged_id: merged_id.into(),
        merged_version,
        reason: "same person: IdMR received after a registration by identity".into(),
    };
    let denied = app
        .registry
        .merge_patients(merge(1, &merged, 2))
        .await
        .expect_err("a prescriber does not merge");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let err = app
        .manager
        .merge_patients(merge(1, &woman, 1))
        .await
        .expect_err("records that disagree on sex");
    assert_eq!(violated_fields(&err), ["merged_id"]);
    let before = app.row_count().await;
    let err = app
        .manager
        .merge_patients(merge(1, &kept, 1))
        .await
        .expect_err("a record with itself");
    assert_eq!(violated_fields(&err), ["merged_id"]);
    assert_eq!(app.row_count().await, before, "nothing of a refused merge is stored");

    let after = app
        .manager
        .merge_patients(merge(1, &merged, 2))
        .await
        .expect("merged")
        .into_inner();
    assert_eq!(after.merged_from, std::slice::from_ref(&merged));
    let codes: Vec<&str> = after.diagnoses.iter().map(|d| d.orpha_code.as_str()).collect();
    assert_eq!(codes, ["98878", "98879"], "the diagnosis the kept record lacked");
    assert_eq!(after.rcp_reviews.len(), 1, "the RCP review moved");
    let gone = app
        .registry
        .get_patient(pb::GetRequest { id: merged.clone() })
        .await
        .expect("the merged record stays readable")
        .into_inner();
    assert_eq!(gone.merged_into, kept);
    assert_eq!(
        episode(&mut app, &episode_b).await.patient_id,
        kept,
        "its treatment moved"
    );
    let moved = reasons(&mut app, pb::RecordKind::Episode, &episode_b).await;
    assert!(
        moved
            .last()
            .is_some_and(|r| r.starts_with("MergePatients: same person") && r.contains(&merged)),
        "{moved:?}"
    );
    let listed: Vec<String> = app
        .registry
        .list_patients(pb::ListPatientsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .patients
        .into_iter()
        .map(|p| p.meta.expect("meta").id)
        .collect();
    assert!(listed.contains(&kept) && !listed.contains(&merged), "{listed:?}");
    let err = app
        .registry
        .update_patient(pb::UpdatePatientRequest {
            id: merged.clone(),
            expected_version: 3,
            reason: "late correction".into(),
            region_code: Some("84".into()),
            ..Default::default()
        })
        .await
        .expect_err("a merged record takes no write");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&kept), "{}", err.message());
    let again = app
        .registry
        .register_patient(pb::RegisterPatientRequest {
            idempotency_key: "by-identity-again".into(),
            ..identity
        })
        .await
        .expect_err("the person is known");
    assert_eq!(again.code(), Code::AlreadyExists);
    assert!(
        again.message().contains(&kept),
        "names the kept record: {}",
        again.message()
    );
    let twice = app
        .manager
        .merge_patients(merge(2, &merged, 3))
        .await
        .expect_err("merged once");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    let merges = app
        .store
        .scalar_i64("SELECT COUNT(*) FROM audit_events WHERE action = 'MergePatients' AND reason NOT LIKE 'refused%'")
        .await
        .expect("count");
    assert_eq!(merges, 1, "the merge is in the audit trail");
    let dir = tempfile::tempdir().expect("temp dir");
    let snapshot = observatory_analytics::snapshot::extract(&app.store, chrono::Utc::now(), dir.path())
        .await
        .expect("snapshot");
    assert_eq!(snapshot.rows.get("patients"), Some(&2), "three records, two people");
    app.stop().await;
}
