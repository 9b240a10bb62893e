//! The registry contract, scenario by scenario.

use observatory_proto::v1::{self as pb, transition_authorisation_request as ta, transition_episode_request as te};
use tonic::Code;

use crate::helpers::{Backend, rpps, spawn_app, violated_fields};
use crate::on_both_backends;

on_both_backends!(
    an_aac_journey_is_recorded_and_every_version_can_be_read_back,
    a_replayed_create_returns_the_original_and_writes_nothing,
    a_stale_expected_version_is_aborted,
    an_illegal_transition_names_both_states,
    invalid_requests_name_the_field_and_store_nothing,
    identity_fields_never_reach_the_database,
    episodes_are_listed_with_filters_and_pages,
    shipped_reference_data_is_served,
    a_switch_links_the_new_episode_to_the_previous_one,
    prescribers_are_listed_by_centre_and_paged,
    patients_are_listed_within_the_scope_searched_and_audited,
    the_worklist_shows_expiries_late_visits_and_treatments_never_started,
    centres_and_prescribers_are_corrected_with_a_reason_in_history,
    a_death_declared_on_a_treatment_is_the_patients_vital_status,
    a_centre_belongs_to_several_filieres_and_is_listed_under_each,
);

/// `ListPatients`: the caller's patients only, in pages, by pseudonym or cohort, each audited.
async fn patients_are_listed_within_the_scope_searched_and_audited(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await.meta.expect("meta").id;
    let mut ours = Vec::new();
    for n in 1..=3 {
        ours.push(app.patient(n).await.meta.expect("meta").id);
    }
    // A patient of another centre.
    app.reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "centre-2".into(),
            finess: "130000011".into(),
            name: "CRC Marseille".into(),
            r#type: pb::CentreType::Ccmr as i32,
            region_code: "93".into(),
            filieres: vec!["MHEMO".into()],
        })
        .await
        .expect("second centre");
    let other = crate::helpers::scoped_token(
        &app.store,
        observatory_domain::access::Role::Prescriber,
        &["130000011"],
        &[],
    )
    .await;
    let mut elsewhere = app.registry_as(&other);
    let theirs = elsewhere
        .register_patient(pb::RegisterPatientRequest {
            idempotency_key: "theirs".into(),
            subject: Some(pb::register_patient_request::Subject::Idmr(
                "00000000000000099999".into(),
            )),
            sex: pb::Sex::Female as i32,
            birth_year_month: "2015-01".into(),
            region_code: "93".into(),
            objects_to_reuse: false,
            diagnoses: Vec::new(),
            cde: None,
        })
        .await
        .expect("register elsewhere")
        .into_inner()
        .meta
        .expect("meta")
        .id;

    // Ours, two by two, and never theirs.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .registry
            .list_patients(pb::ListPatientsRequest {
                page: Some(pb::PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        listed.extend(page.patients.into_iter().filter_map(|p| p.meta.map(|m| m.id)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    listed.sort();
    ours.sort();
    assert_eq!(listed, ours);
    let seen_there = elsewhere
        .list_patients(pb::ListPatientsRequest::default())
        .await
        .expect("their list")
        .into_inner();
    assert_eq!(seen_there.patients.len(), 1);
    assert_eq!(seen_there.patients[0].meta.as_ref().expect("meta").id, theirs);

    // By IdMR: the one record; another centre's IdMR finds nothing here.
    let by_idmr = |idmr: &str| pb::ListPatientsRequest {
        pseudonym: idmr.into(),
        ..Default::default()
    };
    let found = app
        .registry
        .list_patients(by_idmr(&format!("{:020}", 1_002)))
        .await
        .expect("by IdMR")
        .into_inner();
    assert_eq!(found.patients.len(), 1);
    let none = app
        .registry
        .list_patients(by_idmr("00000000000000099999"))
        .await
        .expect("another centre's IdMR")
        .into_inner();
    assert!(none.patients.is_empty());
    let bad = app
        .registry
        .list_patients(by_idmr("Martin"))
        .await
        .expect_err("a name is no pseudonym");
    assert_eq!(violated_fields(&bad), ["pseudonym"]);
    assert!(!bad.message().contains("Martin"), "{bad:?}");

    // By cohort: the patient with an episode in it.
    app.registry
        .declare_episode(app.aac_declaration(&ours[0], &cohort, &rpps, "episode-list"))
        .await
        .expect("declare");
    let in_cohort = app
        .registry
        .list_patients(pb::ListPatientsRequest {
            cohort_id: cohort.clone(),
            ..Default::default()
        })
        .await
        .expect("by cohort")
        .into_inner();
    let ids: Vec<String> = in_cohort
        .patients
        .into_iter()
        .filter_map(|p| p.meta.map(|m| m.id))
        .collect();
    assert_eq!(ids, vec![ours[0].clone()]);

    // By the pathway and status of a current episode.
    let with = |pathway: pb::Pathway, status: pb::EpisodeStatus| pb::ListPatientsRequest {
        pathway: pathway as i32,
        status: status as i32,
        ..Default::default()
    };
    let ids = |r: pb::ListPatientsResponse| -> Vec<String> {
        r.patients.into_iter().filter_map(|p| p.meta.map(|m| m.id)).collect()
    };
    let declared_aac = app
        .registry
        .list_patients(with(pb::Pathway::Aac, pb::EpisodeStatus::Declared))
        .await
        .expect("by pathway and status")
        .into_inner();
    assert_eq!(ids(declared_aac), vec![ours[0].clone()]);
    let ongoing = app
        .registry
        .list_patients(with(pb::Pathway::Unspecified, pb::EpisodeStatus::Ongoing))
        .await
        .expect("by status")
        .into_inner();
    assert!(ids(ongoing).is_empty());
    let off_label = app
        .registry
        .list_patients(with(pb::Pathway::OffLabel, pb::EpisodeStatus::Unspecified))
        .await
        .expect("by pathway")
        .into_inner();
    assert!(ids(off_label).is_empty());
    let bad = app
        .registry
        .list_patients(pb::ListPatientsRequest {
            status: 99,
            ..Default::default()
        })
        .await
        .expect_err("no such status");
    assert_eq!(violated_fields(&bad), ["status"]);

    // Each listing is a patient-level read in the trail.
    let listings = app
        .store
        .scalar_i64("SELECT COUNT(*) FROM audit_events WHERE action = 'ListPatients'")
        .await
        .expect("count");
    assert!(listings >= 5, "{listings} listings audited");
}

/// `ListPrescribers`: every role reads them (reference data); by centre, in pages.
async fn prescribers_are_listed_by_centre_and_paged(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (finess, first) = app.centre_and_prescriber().await;
    app.reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "centre-2".into(),
            finess: "130000011".into(),
            name: "CRC Marseille".into(),
            r#type: pb::CentreType::Ccmr as i32,
            region_code: "93".into(),
            filieres: vec!["MHEMO".into()],
        })
        .await
        .expect("second centre");
    let mut at_first = vec![first];
    for n in 2..=3u64 {
        let rpps = crate::helpers::rpps(n);
        app.reference
            .create_prescriber(pb::CreatePrescriberRequest {
                idempotency_key: format!("prescriber-{n}"),
                rpps: rpps.clone(),
                specialty: "haematology".into(),
                centre_finess: finess.clone(),
            })
            .await
            .expect("prescriber");
        at_first.push(rpps);
    }
    app.reference
        .create_prescriber(pb::CreatePrescriberRequest {
            idempotency_key: "prescriber-elsewhere".into(),
            rpps: crate::helpers::rpps(9),
            specialty: "haematology".into(),
            centre_finess: "130000011".into(),
        })
        .await
        .expect("prescriber elsewhere");

    // A prescriber's token reads them too, two by two.
    let secret = crate::helpers::token_for(&app.store, observatory_domain::access::Role::Prescriber).await;
    let mut as_prescriber = pb::reference_service_client::ReferenceServiceClient::new(
        tonic::service::interceptor::InterceptedService::new(app.channel.clone(), crate::helpers::Bearer::new(&secret)),
    );
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = as_prescriber
            .list_prescribers(pb::ListPrescribersRequest {
                page: Some(pb::PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
                centre_finess: finess.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.prescribers.len() <= 2);
        listed.extend(page.prescribers.into_iter().map(|p| {
            assert_eq!(p.centre_finess, finess);
            p.rpps
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    listed.sort();
    at_first.sort();
    assert_eq!(listed, at_first);
    let all = app
        .reference
        .list_prescribers(pb::ListPrescribersRequest::default())
        .await
        .expect("all")
        .into_inner();
    assert_eq!(all.prescribers.len(), 4);
    let bad = app
        .reference
        .list_prescribers(pb::ListPrescribersRequest {
            page: None,
            centre_finess: "75010012A".into(),
        })
        .await
        .expect_err("a malformed FINESS");
    assert_eq!(violated_fields(&bad), ["centre_finess"]);
}

async fn an_aac_journey_is_recorded_and_every_version_can_be_read_back(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (finess, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let cohort_id = cohort.meta.as_ref().unwrap().id.clone();
    let patient = app.patient(1).await;
    let patient_id = patient.meta.as_ref().unwrap().id.clone();

    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&patient_id, &cohort_id, &rpps, "episode-1"))
        .await
        .expect("declare")
        .into_inner();
    let episode = declared.episode.unwrap();
    let episode_id = episode.meta.as_ref().unwrap().id.clone();
    assert_eq!(episode.status, pb::EpisodeStatus::Declared as i32);
    assert_eq!(episode.centre_finess, finess, "the centre defaults to the prescriber's");
    assert_eq!(episode.drug_atc, "B02BX07", "the drug comes from the cohort");
    let auth = declared
        .authorisation
        .expect("an AAC episode comes with its authorisation request");
    let auth_id = auth.meta.as_ref().unwrap().id.clone();
    assert_eq!(auth.status, pb::AuthorisationStatus::Submitted as i32);
    assert_eq!(episode.authorisation_id, auth_id);

    // Initiating before the grant is refused.
    let early = app
        .registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode_id.clone(),
            expected_version: 1,
            transition: Some(te::Transition::Initiate(te::Initiate {
                first_administration_date: "2026-01-20".into(),
                dosage: None,
            })),
        })
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");

    let grant = |id: &str, version: i64, renew: bool, from: &str, to: &str| pb::TransitionAuthorisationRequest {
        id: id.into(),
        expected_version: version,
        transition: Some({
            let g = ta::Grant {
                decision_date: from.into(),
                valid_from: from.into(),
                valid_to: to.into(),
                reference: "AAC-2026-000123".into(),
            };
            if renew {
                ta::Transition::Renew(g)
            } else {
                ta::Transition::Grant(g)
            }
        }),
    };
    // More than a year is refused for AAC.
    let too_long = app
        .registry
        .transition_authorisation(grant(&auth_id, 1, false, "2026-01-15", "2027-01-15"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_long), vec!["grant.valid_to"]);
    let granted = app
        .registry
        .transition_authorisation(grant(&auth_id, 1, false, "2026-01-15", "2027-01-14"))
        .await
        .expect("grant")
        .into_inner();
    assert_eq!(granted.status, pb::AuthorisationStatus::Granted as i32);
    assert_eq!(granted.meta.as_ref().unwrap().version, 2);

    let initiated = app
        .registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode_id.clone(),
            expected_version: 1,
            transition: Some(te::Transition::Initiate(te::Initiate {
                first_administration_date: "2026-01-20".into(),
                dosage: None,
            })),
        })
        .await
        .expect("initiate")
        .into_inner();
    assert_eq!(initiated.status, pb::EpisodeStatus::Initiated as i32);
    assert_eq!(initiated.decision_date, "2026-01-15");

    let renewal = app
        .registry
        .transition_authorisation(pb::TransitionAuthorisationRequest {
            id: auth_id.clone(),
            expected_version: 2,
            transition: Some(ta::Transition::SubmitRenewal(ta::DatedStep {
                date: "2026-10-01".into(),
            })),
        })
        .await
        .expect("submit renewal")
        .into_inner();
    assert_eq!(renewal.status, pb::AuthorisationStatus::RenewalSubmitted as i32);
    let renewed = app
        .registry
        .transition_authorisation(grant(&auth_id, 3, true, "2026-11-01", "2027-10-31"))
        .await
        .expect("renew")
        .into_inner();
    assert_eq!(renewed.status, pb::AuthorisationStatus::Renewed as i32);
    assert_eq!(renewed.renewals, 1);

    let follow_up = app
        .registry
        .record_follow_up(pb::RecordFollowUpRequest {
            idempotency_key: "fu-1".into(),
            episode_id: episode_id.clone(),
            visit_date: "2026-04-20".into(),
            efficacy: pb::EfficacyAssessment::Improved as i32,
            measures: vec![pb::Measure {
                code: "ABR".into(),
                value: 1.5,
            }],
            weight_kg: 42.0,
            adherence: pb::Adherence::Good as i32,
        })
        .await
        .expect("follow-up")
        .into_inner();
    assert_eq!(follow_up.measures.len(), 1);
    let ongoing = app
        .registry
        .get_episode(pb::GetRequest { id: episode_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ongoing.status,
        pb::EpisodeStatus::Ongoing as i32,
        "the first follow-up makes the episode ongoing"
    );

    let ae = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "ae-1".into(),
            episode_id: episode_id.clone(),
            onset_date: "2026-05-02".into(),
            meddra_pt_code: "10022086".into(),
            meddra_soc_code: "10018065".into(),
            serious: true,
            outcome: pb::AeOutcome::Recovered as i32,
            causality: pb::Causality::PossiblyRelated as i32,
            pv_declaration_date: "2026-05-03".into(),
            pv_reference: "PV-2026-42".into(),
            pv_receiver: "CRPV de Paris".into(),
            case_details: Some(pb::CaseDetails {
                seriousness: vec![pb::SeriousnessCriterion::Hospitalisation as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("adverse event")
        .into_inner();
    assert!(ae.serious);
    let listed = app
        .registry
        .list_follow_ups(pb::ListByEpisodeRequest {
            episode_id: episode_id.clone(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.follow_ups, vec![follow_up.clone()]);
    let listed = app
        .registry
        .list_adverse_events(pb::ListByEpisodeRequest {
            episode_id: episode_id.clone(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.adverse_events, vec![ae.clone()]);
    let unknown = app
        .registry
        .list_follow_ups(pb::ListByEpisodeRequest {
            episode_id: "0193a000-0000-7000-8000-00000000ffff".into(),
            page: None,
        })
        .await
        .unwrap_err();
    // Unknown and out of scope are one answer: ids cannot be probed across centres.
    assert_eq!(unknown.code(), Code::PermissionDenied);

    let stopped = app
        .registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode_id.clone(),
            expected_version: 3,
            transition: Some(te::Transition::Stop(te::Stop {
                date: "2026-11-02".into(),
                reason: pb::StopReason::AdverseEvent as i32,
            })),
        })
        .await
        .expect("stop")
        .into_inner();
    assert_eq!(stopped.status, pb::EpisodeStatus::Stopped as i32);

    let history = app
        .registry
        .get_history(pb::GetHistoryRequest {
            kind: pb::RecordKind::Episode as i32,
            id: episode_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    let statuses: Vec<(i64, i32, String)> = history
        .iter()
        .map(|h| match h.record.as_ref().unwrap() {
            pb::history_entry::Record::Episode(e) => {
                let m = e.meta.as_ref().unwrap();
                (m.version, e.status, m.reason.clone())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        statuses.iter().map(|(v, s, _)| (*v, *s)).collect::<Vec<_>>(),
        vec![
            (1, pb::EpisodeStatus::Declared as i32),
            (2, pb::EpisodeStatus::Initiated as i32),
            (3, pb::EpisodeStatus::Ongoing as i32),
            (4, pb::EpisodeStatus::Stopped as i32),
        ]
    );
    assert!(statuses[3].2.contains("stop"), "the reason says why: {}", statuses[3].2);
    for h in &history {
        if let Some(pb::history_entry::Record::Episode(e)) = &h.record {
            let m = e.meta.as_ref().unwrap();
            // The prescriber's token, by role and public id: nothing that names a person.
            assert!(m.recorded_by.starts_with("prescriber:"), "{}", m.recorded_by);
            assert!(!m.request_id.is_empty());
            assert!(m.recorded_at.is_some());
        }
    }
    let auth_history = app
        .registry
        .get_history(pb::GetHistoryRequest {
            kind: pb::RecordKind::Authorisation as i32,
            id: auth_id,
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(auth_history.len(), 4, "submitted, granted, renewal submitted, renewed");
    app.stop().await;
}

async fn a_replayed_create_returns_the_original_and_writes_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let patient = app.patient(2).await;
    let request = app.aac_declaration(
        &patient.meta.as_ref().unwrap().id,
        &cohort.meta.as_ref().unwrap().id,
        &rpps,
        "episode-replay",
    );
    let first = app
        .registry
        .declare_episode(request.clone())
        .await
        .unwrap()
        .into_inner();
    let rows = app.row_count().await;
    let again = app
        .registry
        .declare_episode(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again, "a replay returns the original result");
    assert_eq!(app.row_count().await, rows, "a replay writes nothing");

    let mut other = request;
    other.request_date = "2026-01-13".into();
    other.authorisation = Some(pb::AuthorisationRequest {
        submitted_date: "2026-01-13".into(),
        reference: String::new(),
    });
    let err = app.registry.declare_episode(other).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["idempotency_key"]);
    assert!(err.message().contains("another request payload"), "{}", err.message());
    assert_eq!(app.row_count().await, rows);
    app.stop().await;
}

async fn a_stale_expected_version_is_aborted(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let patient = app.patient(3).await;
    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&patient.meta.unwrap().id, &cohort.meta.unwrap().id, &rpps, "e"))
        .await
        .unwrap()
        .into_inner();
    let auth_id = declared.authorisation.unwrap().meta.unwrap().id;
    let step = |version| pb::TransitionAuthorisationRequest {
        id: auth_id.clone(),
        expected_version: version,
        transition: Some(ta::Transition::RequestInformation(ta::DatedStep {
            date: "2026-01-14".into(),
        })),
    };
    app.registry
        .transition_authorisation(step(1))
        .await
        .expect("first change");
    let rows = app.row_count().await;
    let err = app.registry.transition_authorisation(step(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("version 2"), "{}", err.message());
    assert_eq!(app.row_count().await, rows);
    app.stop().await;
}

async fn an_illegal_transition_names_both_states(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let patient = app.patient(4).await;
    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&patient.meta.unwrap().id, &cohort.meta.unwrap().id, &rpps, "e"))
        .await
        .unwrap()
        .into_inner();
    let episode_id = declared.episode.unwrap().meta.unwrap().id;
    let err = app
        .registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode_id,
            expected_version: 1,
            transition: Some(te::Transition::Transfer(te::Transfer {
                date: "2026-02-01".into(),
                to_centre_finess: "690781810".into(),
            })),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("DECLARED") && err.message().contains("TRANSFERRED"),
        "{}",
        err.message()
    );
    app.stop().await;
}

async fn invalid_requests_name_the_field_and_store_nothing(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let patient = app.patient(5).await;
    let base = app.aac_declaration(&patient.meta.unwrap().id, &cohort.meta.unwrap().id, &rpps, "bad");
    type Edit = fn(&mut pb::DeclareEpisodeRequest);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "bad ORPHA format",
            |r| r.indication_orpha_code = "ORPHA-x".into(),
            "indication_orpha_code",
        ),
        (
            "unknown ORPHA code",
            |r| r.indication_orpha_code = "1234567".into(),
            "indication_orpha_code",
        ),
        (
            "ORPHA code outside the cohort",
            |r| r.indication_orpha_code = "70".into(),
            "indication_orpha_code",
        ),
        (
            "wrong RPPS check digit",
            |r| {
                let mut s = r.prescriber_rpps.clone();
                let last = s.pop().unwrap();
                s.push(if last == '9' { '0' } else { char::from(last as u8 + 1) });
                r.prescriber_rpps = s;
            },
            "prescriber_rpps",
        ),
        (
            "wrong FINESS check digit",
            |r| r.centre_finess = "750100126".into(),
            "centre_finess",
        ),
        ("unknown pathway number", |r| r.pathway = 42, "pathway"),
        ("missing pathway", |r| r.pathway = 0, "pathway"),
        (
            "pathway other than the cohort's",
            |r| {
                r.pathway = pb::Pathway::OffLabel as i32;
                r.authorisation = None;
                r.off_label = Some(pb::OffLabelJustification {
                    axes: vec![1],
                    evidence_reference: "PMID:1".into(),
                });
            },
            "pathway",
        ),
        (
            "malformed date",
            |r| r.request_date = "12/01/2026".into(),
            "request_date",
        ),
        (
            "request in the future",
            |r| {
                r.request_date = "2999-01-01".into();
                r.authorisation.as_mut().unwrap().submitted_date = "2999-01-01".into();
            },
            "request_date,authorisation.submitted_date",
        ),
        (
            "authorisation submitted before the request",
            |r| {
                r.authorisation = Some(pb::AuthorisationRequest {
                    submitted_date: "2026-01-01".into(),
                    reference: String::new(),
                });
            },
            "authorisation.submitted_date",
        ),
        (
            "AAC without its authorisation request",
            |r| r.authorisation = None,
            "authorisation",
        ),
        (
            "negative dose",
            |r| r.dosage.as_mut().unwrap().dose = -1.0,
            "dosage.dose",
        ),
        (
            "oversized unit",
            |r| r.dosage.as_mut().unwrap().unit = "x".repeat(500),
            "dosage.unit",
        ),
        (
            "unknown route",
            |r| r.dosage.as_mut().unwrap().route = 77,
            "dosage.route",
        ),
        (
            "RCP without opinion",
            |r| r.rcp.as_mut().unwrap().opinion = 0,
            "rcp.opinion",
        ),
        (
            "missing idempotency key",
            |r| r.idempotency_key = String::new(),
            "idempotency_key",
        ),
        (
            "oversized idempotency key",
            |r| r.idempotency_key = "k".repeat(129),
            "idempotency_key",
        ),
        ("malformed patient id", |r| r.patient_id = "42".into(), "patient_id"),
        (
            "switch without the previous version",
            |r| {
                r.previous_episode_id = "0193a000-0000-7000-8000-000000000001".into();
            },
            "previous_episode_version",
        ),
    ];
    let rows = app.row_count().await;
    for (what, edit, field) in cases {
        let mut request = base.clone();
        edit(&mut request);
        let err = app.registry.declare_episode(request).await.expect_err(what);
        assert_eq!(violated_fields(&err).join(","), field, "{what}: {err:?}");
        assert_eq!(app.row_count().await, rows, "{what} stored something");
    }

    // Several faults at once are all reported.
    let mut request = base.clone();
    request.request_date = "nope".into();
    request.prescriber_rpps = "123".into();
    let err = app.registry.declare_episode(request).await.unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, vec!["prescriber_rpps", "request_date"]);

    // Other messages: off-label needs a justification; bad codes in cohorts and centres.
    let err = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: "c".into(),
            name: "Rituximab off-label".into(),
            filiere: "FILNEMUS".into(),
            pathway: pb::Pathway::Cpc as i32,
            drug_atc: "L01FA1".into(),
            orpha_codes: vec!["589".into(), "589".into()],
            framework_id: String::new(),
            follow_up_months: 30,
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, vec!["drug_atc", "follow_up_months", "orpha_codes[1]"]);
    let err = app
        .reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "c2".into(),
            finess: "75010012A".into(),
            name: "n".into(),
            r#type: 9,
            region_code: "99".into(),
            filieres: vec!["NOPE".into()],
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(fields, vec!["filieres[0]", "finess", "region_code", "type"]);
    let err = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "ae".into(),
            episode_id: "0193a000-0000-7000-8000-000000000001".into(),
            onset_date: "2026-01-01".into(),
            meddra_pt_code: "1002208".into(),
            outcome: pb::AeOutcome::Recovered as i32,
            causality: pb::Causality::Related as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["meddra_pt_code"]);
    assert_eq!(app.row_count().await, rows);
    app.stop().await;
}

async fn identity_fields_never_reach_the_database(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let register = |first: &str| pb::RegisterPatientRequest {
        idempotency_key: format!("registration-{}", first.len()),
        subject: Some(pb::register_patient_request::Subject::Identity(pb::Identity {
            last_name: "Zyxwvutsonne".into(),
            first_name: first.into(),
            birth_date: "2011-02-03".into(),
            sex: pb::Sex::Female as i32,
        })),
        sex: 0,
        birth_year_month: String::new(),
        region_code: "84".into(),
        objects_to_reuse: true,
        diagnoses: vec![],
        cde: None,
    };
    let mut request = tonic::Request::new(register("Quiltrude"));
    // A request id that could carry a name is not stored; a UUID one is.
    request
        .metadata_mut()
        .insert("x-request-id", "Zyxwvutsonne-Quiltrude".parse().unwrap());
    let patient = app.registry.register_patient(request).await.unwrap().into_inner();
    let stored_id = patient.meta.as_ref().unwrap().request_id.clone();
    assert!(
        !stored_id.to_lowercase().contains("quiltrude") && stored_id.len() == 36,
        "{stored_id}"
    );
    assert_eq!(patient.pseudonym_kind, pb::PseudonymKind::Hmac as i32);
    assert_eq!(patient.birth_year_month, "2011-02");
    assert_eq!(patient.sex, pb::Sex::Female as i32);

    // The same person spelt differently is the same pseudonym.
    let mut again = register("QUILTRUDE ");
    again.idempotency_key = "other-key".into();
    let err = app.registry.register_patient(again).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&patient.meta.as_ref().unwrap().id));
    assert!(!err.message().to_lowercase().contains("quiltrude"));

    // An invalid identity is reported without echoing it.
    let mut bad = register("Quiltrude");
    bad.idempotency_key = "bad".into();
    if let Some(pb::register_patient_request::Subject::Identity(i)) = bad.subject.as_mut() {
        i.birth_date = "Zyxwvutsonne".into();
    }
    let err = app.registry.register_patient(bad).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["identity.birth_date"]);
    assert!(!format!("{err:?}").contains("Zyxwvutsonne"));

    // Nothing of the identity is stored, in any form a grep would find.
    if backend == Backend::Sqlite {
        let path = app.dir.path().join("observatory.db");
        app.store.close().await;
        let mut bytes = std::fs::read(&path).unwrap();
        let wal = path.with_extension("db-wal");
        if let Ok(w) = std::fs::read(wal) {
            bytes.extend(w);
        }
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(text.contains("hmac"), "the database file was read");
        let key = std::fs::read_to_string(app.dir.path().join("observatory.key")).unwrap();
        assert!(
            !text.contains(key.trim()),
            "the pseudonymisation key is not in the database"
        );
        assert!(!text.contains("zyxwvutsonne") && !text.contains("quiltrude") && !text.contains("2011-02-03"));
    } else {
        let dump: i64 = app
            .store
            .scalar_i64(
                "SELECT COUNT(*) FROM patient_versions WHERE lower(body::text) LIKE '%zyxwvutsonne%' \
                 OR lower(body::text) LIKE '%quiltrude%' OR body::text LIKE '%2011-02-03%'",
            )
            .await
            .unwrap();
        assert_eq!(dump, 0);
    }
}

async fn episodes_are_listed_with_filters_and_pages(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (finess, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await;
    let cohort_id = cohort.meta.unwrap().id;
    for n in 0..5 {
        let patient = app.patient(10 + n).await;
        let mut request = app.aac_declaration(&patient.meta.unwrap().id, &cohort_id, &rpps, &format!("ep-{n}"));
        if n == 4 {
            request.indication_orpha_code = "98879".into();
        }
        app.registry.declare_episode(request).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .registry
            .list_episodes(pb::ListEpisodesRequest {
                page: Some(pb::PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
                cohort_id: cohort_id.clone(),
                centre_finess: finess.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.episodes.len() <= 2);
        seen.extend(page.episodes.into_iter().map(|e| e.meta.unwrap().id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "pages neither repeat nor skip");
    let b = app
        .registry
        .list_episodes(pb::ListEpisodesRequest {
            orpha_code: "98879".into(),
            status: pb::EpisodeStatus::Declared as i32,
            request_date: Some(pb::DateRange {
                from: "2026-01-01".into(),
                to: "2026-01-31".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.episodes.len(), 1);
    let none = app
        .registry
        .list_episodes(pb::ListEpisodesRequest {
            pathway: pb::Pathway::Cpc as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.episodes.is_empty());
    let err = app
        .registry
        .list_episodes(pb::ListEpisodesRequest {
            page: Some(pb::PageRequest {
                page_size: 2,
                page_token: "not-a-token".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["page.page_token"]);
    app.stop().await;
}

async fn shipped_reference_data_is_served(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let drugs = app
        .reference
        .list_drugs(pb::ListDrugsRequest {
            atc_prefix: "B02".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(drugs.drugs.iter().any(|d| d.atc == "B02BX06" && d.inn == "emicizumab"));
    let diseases = app
        .reference
        .list_diseases(pb::ListDiseasesRequest {
            filiere: "FILNEMUS".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(diseases.diseases.iter().any(|d| d.orpha_code == "70"));
    assert!(diseases.diseases.iter().all(|d| d.filiere == "FILNEMUS"));
    let cpc = app
        .reference
        .list_frameworks(pb::ListFrameworksRequest {
            pathway: pb::Pathway::Cpc as i32,
            drug_atc: "B02BX06".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cpc.frameworks.len(), 1);
    assert_eq!(cpc.frameworks[0].status, pb::FrameworkStatus::Granted as i32);

    // Health and reflection answer, so grpcurl and grpc_health_probe work.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "observatory.v1.RegistryService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    // Reflection describes the API to any authenticated caller, and to no one else.
    let err = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let token = crate::helpers::token_for(&app.store, observatory_domain::access::Role::Analyst).await;
    let mut reflection = ServerReflectionClient::new(tonic::service::interceptor::InterceptedService::new(
        app.channel.clone(),
        crate::helpers::Bearer::new(&token),
    ));
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"observatory.v1.RegistryService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"observatory.v1.ReferenceService".to_string()),
        "{names:?}"
    );
    // The error details the server sends are described too, so grpcurl decodes a BadRequest.
    let symbol = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("google.rpc.BadRequest".into())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![symbol]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!(
            "google.rpc.BadRequest is not described: {:?}",
            response.message_response
        )
    };
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice())
                .expect("a file descriptor")
                .name
                .unwrap_or_default()
        })
        .collect();
    assert!(
        names.contains(&"google/rpc/error_details.proto".to_owned()),
        "{names:?}"
    );
    app.stop().await;
}

async fn a_switch_links_the_new_episode_to_the_previous_one(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, prescriber) = app.centre_and_prescriber().await;
    assert_eq!(prescriber, rpps(1));
    let cohort = app.aac_cohort().await;
    let cohort_id = cohort.meta.unwrap().id;
    let patient_id = app.patient(30).await.meta.unwrap().id;
    let first = app
        .registry
        .declare_episode(app.aac_declaration(&patient_id, &cohort_id, &prescriber, "first"))
        .await
        .unwrap()
        .into_inner();
    let first_id = first.episode.unwrap().meta.unwrap().id;
    let auth_id = first.authorisation.unwrap().meta.unwrap().id;
    app.registry
        .transition_authorisation(pb::TransitionAuthorisationRequest {
            id: auth_id,
            expected_version: 1,
            transition: Some(ta::Transition::Grant(ta::Grant {
                decision_date: "2026-01-15".into(),
                valid_from: "2026-01-15".into(),
                valid_to: "2027-01-14".into(),
                reference: "AAC-1".into(),
            })),
        })
        .await
        .unwrap();
    app.registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: first_id.clone(),
            expected_version: 1,
            transition: Some(te::Transition::Initiate(te::Initiate {
                first_administration_date: "2026-01-16".into(),
                dosage: None,
            })),
        })
        .await
        .unwrap();
    // Switch to an off-label cohort of another drug.
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
        .unwrap()
        .into_inner();
    let mut request = app.aac_declaration(&patient_id, &off_label.meta.unwrap().id, &prescriber, "second");
    request.pathway = pb::Pathway::OffLabel as i32;
    request.authorisation = None;
    request.request_date = "2026-03-01".into();
    request.previous_episode_id = first_id.clone();
    request.previous_episode_version = 2;
    let missing = app.registry.declare_episode(request.clone()).await.unwrap_err();
    assert_eq!(violated_fields(&missing), vec!["off_label"]);
    request.off_label = Some(pb::OffLabelJustification {
        axes: vec![pb::OffLabelAxis::Indication as i32, pb::OffLabelAxis::Age as i32],
        evidence_reference: "PMID:12345678".into(),
    });
    let second = app.registry.declare_episode(request).await.unwrap().into_inner();
    let previous = second.previous_episode.expect("the replaced episode is returned");
    assert_eq!(previous.status, pb::EpisodeStatus::Switched as i32);
    assert_eq!(previous.end_date, "2026-03-01");
    assert_eq!(second.episode.unwrap().previous_episode_id, first_id);
    app.stop().await;
}

on_both_backends!(
    a_baseline_visit_precedes_the_first_administration_and_visits_go_on_after_a_stop,
    a_one_shot_treatment_is_given_once_and_its_follow_up_ends,
    an_aac_dispensed_before_its_request_starts_before_the_grant_and_is_flagged,
    frameworks_over_their_cap_or_due_for_renewal_are_on_the_worklist,
    the_common_data_elements_are_recorded_checked_and_corrected,
    corrections_keep_their_reason_in_history,
    closed_cohorts_and_framework_lifecycles_gate_new_episodes,
);

async fn corrections_keep_their_reason_in_history(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort_id = app.aac_cohort().await.meta.unwrap().id;
    let patient_id = app.patient(40).await.meta.unwrap().id;
    // The patient belongs to the prescriber's centre through an episode there.
    let declaration = app.aac_declaration(&patient_id, &cohort_id, &rpps, "episode-40");
    app.registry.declare_episode(declaration).await.expect("declare");

    let update = |version: i64, reason: &str| pb::UpdatePatientRequest {
        id: patient_id.clone(),
        expected_version: version,
        reason: reason.into(),
        region_code: None,
        vital_status: 0,
        objects_to_reuse: Some(true),
        diagnoses: None,
        cde: None,
        sex: 0,
        birth_year_month: None,
    };
    let err = app.registry.update_patient(update(1, "")).await.unwrap_err();
    assert_eq!(violated_fields(&err), vec!["reason"]);
    let objected = app
        .registry
        .update_patient(update(1, "objection received by the centre"))
        .await
        .unwrap()
        .into_inner();
    assert!(objected.objects_to_reuse);
    assert_eq!(objected.meta.as_ref().unwrap().version, 2);
    let stale = app.registry.update_patient(update(1, "again")).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let same = app.registry.update_patient(update(2, "no change")).await.unwrap_err();
    assert_eq!(
        same.code(),
        Code::FailedPrecondition,
        "an update that changes nothing writes nothing"
    );
    let deceased = app
        .registry
        .update_patient(pb::UpdatePatientRequest {
            vital_status: pb::VitalStatus::Deceased as i32,
            region_code: Some(String::new()),
            objects_to_reuse: None,
            ..update(2, "death notified")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deceased.vital_status, pb::VitalStatus::Deceased as i32);
    assert!(deceased.region_code.is_empty(), "an empty region clears it");
    let reasons = app.patient_history_reasons(&patient_id).await;
    assert_eq!(reasons.len(), 3);
    assert!(reasons[1].ends_with("objection received by the centre"), "{reasons:?}");
    assert!(reasons[2].ends_with("death notified"), "{reasons:?}");
    let err = app
        .registry
        .declare_episode(app.aac_declaration(&patient_id, &cohort_id, &rpps, "after-death"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // An adverse event is completed with its pharmacovigilance declaration later.
    let other = app.patient(41).await.meta.unwrap().id;
    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&other, &cohort_id, &rpps, "e41"))
        .await
        .unwrap()
        .into_inner();
    let episode_id = declared.episode.unwrap().meta.unwrap().id;
    let ae = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "ae41".into(),
            episode_id,
            onset_date: "2026-02-01".into(),
            meddra_pt_code: "10019211".into(),
            outcome: pb::AeOutcome::Recovering as i32,
            causality: pb::Causality::NotAssessable as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ae_update = |pv_date: &str, pv_reference: &str| pb::UpdateAdverseEventRequest {
        id: ae.meta.as_ref().unwrap().id.clone(),
        expected_version: 1,
        reason: "declared to the regional pharmacovigilance centre".into(),
        serious: Some(true),
        outcome: pb::AeOutcome::Recovered as i32,
        causality: 0,
        pv_declaration_date: pv_date.into(),
        pv_reference: pv_reference.into(),
        pv_receiver: (!pv_reference.is_empty()).then(|| "CRPV de Lyon".into()),
        case_details: None,
    };
    let err = app
        .registry
        .update_adverse_event(ae_update("2026-02-03", ""))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["pv_reference"]);
    let err = app
        .registry
        .update_adverse_event(ae_update("2026-01-03", "PV-1"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), vec!["pv_declaration_date"], "before the onset");
    let done = app
        .registry
        .update_adverse_event(ae_update("2026-02-03", "PV-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(done.serious);
    assert_eq!(done.outcome, pb::AeOutcome::Recovered as i32);
    assert_eq!(
        done.causality,
        pb::Causality::NotAssessable as i32,
        "unspecified leaves it unchanged"
    );
    assert_eq!(done.pv_reference, "PV-1");
    assert_eq!(done.pv_receiver, "CRPV de Lyon", "who it was declared to");
    app.stop().await;
}

async fn closed_cohorts_and_framework_lifecycles_gate_new_episodes(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let framework = app
        .reference
        .create_framework(pb::CreateFrameworkRequest {
            idempotency_key: "fw".into(),
            pathway: pb::Pathway::Cpc as i32,
            drug_atc: "L01FA01".into(),
            indication: "MuSK myasthenia (test)".into(),
            orpha_codes: vec!["589".into()],
            authority: "ANSM".into(),
            decision_reference: "TEST-CPC-1".into(),
            valid_from: "2026-01-01".into(),
            valid_to: String::new(),
            status: pb::FrameworkStatus::UnderReview as i32,
            protocol_type: pb::ProtocolType::PutSp as i32,
            protocol_version: "1".into(),
            follow_up_months: 6,
            source: "test".into(),
            confirmed: false,
            requires_national_rcp: false,
            synthesis_months: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let framework_id = framework.meta.as_ref().unwrap().id.clone();
    let cohort = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: "cpc".into(),
            name: "Rituximab CPC".into(),
            filiere: "FILNEMUS".into(),
            pathway: pb::Pathway::Cpc as i32,
            drug_atc: "L01FA01".into(),
            orpha_codes: vec!["589".into()],
            framework_id: framework_id.clone(),
            follow_up_months: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cohort.follow_up_months, 6, "the schedule defaults to the framework's");
    let cohort_id = cohort.meta.as_ref().unwrap().id.clone();
    let mut patients = Vec::new();
    for n in 50..55 {
        patients.push(app.patient(n).await.meta.unwrap().id);
    }
    let patient_of = |key: &str| patients[usize::from(key.as_bytes()[0] - b'a')].clone();
    let declare = |key: &str, date: &str| pb::DeclareEpisodeRequest {
        idempotency_key: key.into(),
        patient_id: patient_of(key),
        cohort_id: cohort_id.clone(),
        pathway: pb::Pathway::Cpc as i32,
        indication_orpha_code: "589".into(),
        prescriber_rpps: rpps.clone(),
        request_date: date.into(),
        ..Default::default()
    };
    let err = app
        .registry
        .declare_episode(declare("a", "2026-03-01"))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["request_date"],
        "a framework under review includes nobody"
    );

    let transition = |version: i64, t: pb::transition_framework_request::Transition| pb::TransitionFrameworkRequest {
        id: framework_id.clone(),
        expected_version: version,
        transition: Some(t),
    };
    use pb::transition_framework_request::{DatedStep, Grant, Transition as F};
    let granted = app
        .reference
        .transition_framework(transition(
            1,
            F::Grant(Grant {
                date: "2026-02-01".into(),
                valid_from: "2026-02-01".into(),
                valid_to: "2029-01-31".into(),
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.status, pb::FrameworkStatus::Granted as i32);
    app.registry
        .declare_episode(declare("b", "2026-03-01"))
        .await
        .expect("declared under a granted framework");
    let err = app
        .registry
        .declare_episode(declare("c", "2026-01-15"))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["request_date"],
        "before the framework's validity"
    );

    app.reference
        .transition_framework(transition(
            2,
            F::Suspend(DatedStep {
                date: "2026-04-01".into(),
            }),
        ))
        .await
        .unwrap();
    let err = app
        .registry
        .declare_episode(declare("d", "2026-04-02"))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&err),
        vec!["request_date"],
        "a suspended framework includes nobody"
    );
    let err = app
        .reference
        .transition_framework(transition(
            3,
            F::SubmitRenewal(DatedStep {
                date: "2026-04-03".into(),
            }),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("SUSPENDED") && err.message().contains("RENEWAL_SUBMITTED"),
        "{}",
        err.message()
    );
    app.reference
        .transition_framework(transition(
            3,
            F::Reinstate(DatedStep {
                date: "2026-04-10".into(),
            }),
        ))
        .await
        .unwrap();

    // Closing the cohort stops new declarations; reopening allows them again.
    let close = |version: i64, t: pb::CohortTransition| pb::TransitionCohortRequest {
        id: cohort_id.clone(),
        expected_version: version,
        transition: t as i32,
    };
    app.manager
        .transition_cohort(close(1, pb::CohortTransition::Close))
        .await
        .unwrap();
    let err = app
        .registry
        .declare_episode(declare("e", "2026-04-12"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = app
        .manager
        .transition_cohort(close(2, pb::CohortTransition::Close))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    app.manager
        .transition_cohort(close(2, pb::CohortTransition::Reopen))
        .await
        .unwrap();
    app.registry
        .declare_episode(declare("e", "2026-04-12"))
        .await
        .expect("reopened");
    let mut twice = declare("e", "2026-04-13");
    twice.idempotency_key = "e2".into();
    let err = app.registry.declare_episode(twice).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "one active episode per patient and drug"
    );
    assert!(err.message().contains("switch"), "{}", err.message());
    let history = app
        .registry
        .get_history(pb::GetHistoryRequest {
            kind: pb::RecordKind::Framework as i32,
            id: framework_id,
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(history.len(), 4, "created, granted, suspended, reinstated");
    app.stop().await;
}

/// `GetWorklist`: authorisations in force ending within the horizon (30, 60 or 90 days),
/// treatments whose visit is late against the cohort's schedule, declarations never initiated;
/// within the caller's scope, every line audited.
async fn the_worklist_shows_expiries_late_visits_and_treatments_never_started(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    // A schedule of a visit every 3 months.
    let cohort = app.aac_cohort().await.meta.expect("meta").id;
    let today = observatory_store::today(chrono::Utc::now());
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();
    let mut episodes = Vec::new();
    for n in 1..=4u32 {
        let patient = app.patient(n).await.meta.expect("meta").id;
        let d = app
            .registry
            .declare_episode(app.aac_declaration(&patient, &cohort, &rpps, &format!("worklist-{n}")))
            .await
            .expect("declare")
            .into_inner();
        episodes.push((d.episode.expect("episode"), d.authorisation.expect("authorisation")));
    }
    // 1: expires in 20 days; 2: in 50 days; 3: granted long ago, initiated 130 days ago and never
    // seen since; 4: declared only.
    let grant = |a: &pb::Authorisation, from: i64, to: i64| pb::TransitionAuthorisationRequest {
        id: a.meta.as_ref().expect("meta").id.clone(),
        expected_version: a.meta.as_ref().expect("meta").version,
        transition: Some(ta::Transition::Grant(ta::Grant {
            decision_date: day(from),
            valid_from: day(from),
            valid_to: day(to),
            reference: format!("AAC-{from}-{to}"),
        })),
    };
    for (i, (from, to)) in [(-100, 20), (-100, 50), (-140, 200)].into_iter().enumerate() {
        app.registry
            .transition_authorisation(grant(&episodes[i].1, from, to))
            .await
            .expect("grant");
    }
    let third = app
        .registry
        .get_episode(pb::GetRequest {
            id: episodes[2].0.meta.as_ref().expect("meta").id.clone(),
        })
        .await
        .expect("episode")
        .into_inner()
        .meta
        .expect("meta");
    app.registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: third.id.clone(),
            expected_version: third.version,
            transition: Some(te::Transition::Initiate(te::Initiate {
                first_administration_date: day(-130),
                dosage: None,
            })),
        })
        .await
        .expect("initiate");
    let id = |i: usize| episodes[i].0.meta.as_ref().expect("meta").id.clone();

    let worklist = |days: i32| pb::GetWorklistRequest { within_days: days };
    let w30 = app
        .registry
        .get_worklist(worklist(0))
        .await
        .expect("worklist")
        .into_inner();
    assert_eq!(w30.within_days, 30);
    assert_eq!(w30.as_of_date, today.to_string());
    let expiring: Vec<(String, i32)> = w30
        .expiring_authorisations
        .iter()
        .map(|x| {
            (
                x.episode
                    .as_ref()
                    .expect("episode")
                    .meta
                    .as_ref()
                    .expect("meta")
                    .id
                    .clone(),
                x.days_left,
            )
        })
        .collect();
    assert_eq!(expiring, vec![(id(0), 20)]);
    let w60 = app
        .registry
        .get_worklist(worklist(60))
        .await
        .expect("worklist")
        .into_inner();
    let expiring: Vec<i32> = w60.expiring_authorisations.iter().map(|x| x.days_left).collect();
    assert_eq!(expiring, vec![20, 50], "soonest first");
    assert_eq!(w30.overdue_follow_ups.len(), 1);
    let late = &w30.overdue_follow_ups[0];
    assert_eq!(
        late.episode.as_ref().expect("episode").meta.as_ref().expect("meta").id,
        id(2)
    );
    let due = (today + chrono::Duration::days(-130))
        .checked_add_months(chrono::Months::new(3))
        .expect("due");
    assert_eq!(late.due_date, due.to_string());
    assert_eq!(late.days_late as i64, (today - due).num_days());
    assert!(late.last_visit_date.is_empty());
    let never: Vec<String> = w30
        .never_initiated
        .iter()
        .map(|e| e.meta.as_ref().expect("meta").id.clone())
        .collect();
    // The first two are granted but not initiated either: declared until their first dose.
    assert_eq!(never.len(), 3);
    assert!(never.contains(&id(3)) && !never.contains(&id(2)));
    assert!(!w30.truncated);

    // A visit puts the treatment back on schedule.
    app.registry
        .record_follow_up(pb::RecordFollowUpRequest {
            idempotency_key: "worklist-visit".into(),
            episode_id: id(2),
            visit_date: day(-1),
            efficacy: pb::EfficacyAssessment::Stable as i32,
            measures: Vec::new(),
            weight_kg: 0.0,
            adherence: pb::Adherence::Good as i32,
        })
        .await
        .expect("visit");
    let after = app
        .registry
        .get_worklist(worklist(30))
        .await
        .expect("worklist")
        .into_inner();
    assert!(after.overdue_follow_ups.is_empty());

    // Another centre's prescriber has nothing of ours to do; a horizon of 45 days is refused.
    let other = crate::helpers::scoped_token(
        &app.store,
        observatory_domain::access::Role::Prescriber,
        &["130000011"],
        &[],
    )
    .await;
    let mut elsewhere = app.registry_as(&other);
    let theirs = elsewhere
        .get_worklist(worklist(90))
        .await
        .expect("their worklist")
        .into_inner();
    assert!(theirs.expiring_authorisations.is_empty() && theirs.never_initiated.is_empty());
    let bad = app.registry.get_worklist(worklist(45)).await.expect_err("45 days");
    assert_eq!(violated_fields(&bad), ["within_days"]);

    // Every line is a patient-level read in the trail.
    let audited = app
        .store
        .scalar_i64("SELECT COUNT(*) FROM audit_events WHERE action = 'GetWorklist'")
        .await
        .expect("count");
    assert!(audited >= 3, "{audited} worklists audited");
}

/// `UpdateCentre`, `UpdatePrescriber`: the admin corrects a centre and moves a prescriber, each
/// a new version with its reason; a stale version is ABORTED, an unknown centre NOT_FOUND, a
/// change of nothing FAILED_PRECONDITION, and a prescriber may not make them.
async fn centres_and_prescribers_are_corrected_with_a_reason_in_history(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (finess, rpps) = app.centre_and_prescriber().await;
    app.reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "centre-2".into(),
            finess: "130000011".into(),
            name: "CRC Marseille".into(),
            r#type: pb::CentreType::Ccmr as i32,
            region_code: "93".into(),
            filieres: vec!["MHEMO".into()],
        })
        .await
        .expect("second centre");
    let renamed = app
        .reference
        .update_centre(pb::UpdateCentreRequest {
            finess: finess.clone(),
            expected_version: 1,
            reason: "name as in the 2026 labelling decree".into(),
            name: Some("CRMR maladies hémorragiques, Paris".into()),
            r#type: None,
            region_code: None,
            filieres: None,
        })
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(renamed.name, "CRMR maladies hémorragiques, Paris");
    assert_eq!(renamed.r#type, pb::CentreType::CrmrCoordinating as i32, "unchanged");
    assert_eq!(renamed.meta.as_ref().expect("meta").version, 2);
    let stale = app
        .reference
        .update_centre(pb::UpdateCentreRequest {
            finess: finess.clone(),
            expected_version: 1,
            reason: "again".into(),
            region_code: Some("93".into()),
            ..Default::default()
        })
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let nothing = app
        .reference
        .update_centre(pb::UpdateCentreRequest {
            finess: finess.clone(),
            expected_version: 2,
            reason: "no change".into(),
            name: Some("CRMR maladies hémorragiques, Paris".into()),
            ..Default::default()
        })
        .await
        .expect_err("nothing changes");
    assert_eq!(nothing.code(), Code::FailedPrecondition, "{nothing:?}");
    // MHEMO's haemophilia treatment centres have their own type.
    let crc = app
        .reference
        .update_centre(pb::UpdateCentreRequest {
            finess: finess.clone(),
            expected_version: 2,
            reason: "labelled CRC-MHC by the network".into(),
            r#type: Some(pb::CentreType::Crc as i32),
            ..Default::default()
        })
        .await
        .expect("reclassified as a CRC")
        .into_inner();
    assert_eq!(crc.r#type, pb::CentreType::Crc as i32);
    let crc = app
        .reference
        .get_centre(pb::GetCentreRequest { finess: finess.clone() })
        .await
        .expect("read back")
        .into_inner();
    assert_eq!(crc.r#type, pb::CentreType::Crc as i32);
    assert_eq!(crc.meta.as_ref().expect("meta").version, 3);
    let no_reason = app
        .reference
        .update_centre(pb::UpdateCentreRequest {
            finess: finess.clone(),
            expected_version: 2,
            reason: String::new(),
            name: Some("x".into()),
            ..Default::default()
        })
        .await
        .expect_err("a reason is required");
    assert_eq!(violated_fields(&no_reason), ["reason"]);

    let moved = app
        .reference
        .update_prescriber(pb::UpdatePrescriberRequest {
            rpps: rpps.clone(),
            expected_version: 1,
            reason: "joined the Marseille centre".into(),
            specialty: None,
            centre_finess: Some("130000011".into()),
        })
        .await
        .expect("move")
        .into_inner();
    assert_eq!(moved.centre_finess, "130000011");
    let nowhere = app
        .reference
        .update_prescriber(pb::UpdatePrescriberRequest {
            rpps: rpps.clone(),
            expected_version: 2,
            reason: "moved again".into(),
            specialty: None,
            centre_finess: Some("690781810".into()),
        })
        .await
        .expect_err("no such centre");
    assert_eq!(nowhere.code(), Code::NotFound, "{nowhere:?}");
    let history = app
        .registry
        .get_history(pb::GetHistoryRequest {
            kind: pb::RecordKind::Prescriber as i32,
            id: rpps.clone(),
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.versions.len(), 2);
    let last = match history.versions[1].record.as_ref() {
        Some(pb::history_entry::Record::Prescriber(p)) => p.meta.clone().expect("meta"),
        other => panic!("{other:?}"),
    };
    assert!(last.reason.contains("joined the Marseille centre"), "{last:?}");

    // Reference writes are the admin's.
    let prescriber = crate::helpers::token_for(&app.store, observatory_domain::access::Role::Prescriber).await;
    let mut as_prescriber = app.reference_as(&prescriber);
    let refused = as_prescriber
        .update_centre(pb::UpdateCentreRequest {
            finess,
            expected_version: 2,
            reason: "not mine".into(),
            name: Some("y".into()),
            ..Default::default()
        })
        .await
        .expect_err("a prescriber");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

/// A DECEASED stop writes the patient's vital status in the same commit, with the episode named
/// in the patient's history; no treatment can then be declared for the patient.
async fn a_death_declared_on_a_treatment_is_the_patients_vital_status(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, prescriber) = app.centre_and_prescriber().await;
    let cohort_id = app.aac_cohort().await.meta.unwrap().id;
    let patient_id = app.patient(31).await.meta.unwrap().id;
    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&patient_id, &cohort_id, &prescriber, "death"))
        .await
        .unwrap()
        .into_inner();
    let episode_id = declared.episode.unwrap().meta.unwrap().id;
    let stopped = app
        .registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode_id.clone(),
            expected_version: 1,
            transition: Some(te::Transition::Deceased(te::Deceased {
                date: "2026-02-01".into(),
            })),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.status, pb::EpisodeStatus::Deceased as i32);
    let patient = app
        .registry
        .get_patient(pb::GetRequest { id: patient_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(patient.vital_status, pb::VitalStatus::Deceased as i32);
    assert_eq!(patient.meta.as_ref().unwrap().version, 2);
    let reasons = app.patient_history_reasons(&patient_id).await;
    let reason = reasons.last().expect("the patient has versions");
    assert!(
        reason.contains("declare deceased") && reason.contains(&episode_id),
        "the patient's history names the episode: {reason}"
    );
    let after = app
        .registry
        .declare_episode(app.aac_declaration(&patient_id, &cohort_id, &prescriber, "after-death"))
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition);
    app.stop().await;
}

async fn the_common_data_elements_are_recorded_checked_and_corrected(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort_id = app.aac_cohort().await.meta.unwrap().id;
    let months = |m: u32| {
        Some(pb::AgeAt {
            kind: pb::AgeKind::Months as i32,
            months: m,
        })
    };
    // Haemophilia A, severe without inhibitors, an F8 variant; born 2010-05.
    let mut request = app.patient_request(60);
    request.diagnoses[0].factor_level_class = pb::FactorLevelClass::Severe as i32;
    request.diagnoses[0].inhibitor_status = pb::InhibitorStatus::Never as i32;
    request.cde = Some(pb::CommonDataElements {
        age_at_onset: months(9),
        age_at_diagnosis: Some(pb::AgeAt {
            kind: pb::AgeKind::AtBirth as i32,
            months: 0,
        }),
        undiagnosed: false,
        genotype: vec![pb::Genotype {
            gene: "F8".into(),
            variants: vec!["NM_000132.4:c.6046C>T".into()],
        }],
        contact_for_research: pb::ConsentStatus::Given as i32,
        reuse_consent: pb::ConsentStatus::NotAsked as i32,
    });
    let registered = app
        .registry
        .register_patient(request.clone())
        .await
        .expect("register")
        .into_inner();
    let id = registered.meta.clone().unwrap().id;
    let read = app
        .registry
        .get_patient(pb::GetRequest { id: id.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(read.cde, request.cde, "every element reads back as given");
    assert_eq!(
        read.diagnoses[0].factor_level_class,
        pb::FactorLevelClass::Severe as i32
    );
    assert_eq!(read.diagnoses[0].inhibitor_status, pb::InhibitorStatus::Never as i32);

    // What does not hold is refused with its field path, and nothing is stored.
    let before = app.row_count().await;
    let mut bad = app.patient_request(61);
    bad.diagnoses[0].orpha_code = "70".into();
    bad.diagnoses[0].icd10 = String::new();
    bad.diagnoses[0].factor_level_class = pb::FactorLevelClass::Mild as i32;
    bad.cde = Some(pb::CommonDataElements {
        age_at_onset: months(5000),
        undiagnosed: true,
        genotype: vec![
            pb::Genotype {
                gene: "SMN1".into(),
                variants: vec!["c.840C>T".into()],
            };
            6
        ],
        ..Default::default()
    });
    let err = app.registry.register_patient(bad.clone()).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        ["cde.genotype"],
        "counts are bounded before anything else"
    );
    bad.cde.as_mut().unwrap().genotype.truncate(1);
    let err = app.registry.register_patient(bad.clone()).await.unwrap_err();
    assert_eq!(
        violated_fields(&err),
        [
            "cde.age_at_onset.months",
            "cde.undiagnosed",
            "diagnoses[0].factor_level_class"
        ]
    );
    bad.cde.as_mut().unwrap().age_at_onset = Some(pb::AgeAt {
        kind: pb::AgeKind::Unspecified as i32,
        months: 0,
    });
    let err = app.registry.register_patient(bad).await.unwrap_err();
    assert!(
        violated_fields(&err).contains(&"cde.age_at_onset.kind".to_owned()),
        "{err:?}"
    );
    assert_eq!(app.row_count().await, before, "nothing partial is stored");

    // Sex, birth month and the elements are corrected with a reason kept in history; the
    // first version still reads as it was.
    let declaration = app.aac_declaration(&id, &cohort_id, &rpps, "episode-60");
    app.registry.declare_episode(declaration).await.expect("declare");
    let update = |version: i64| pb::UpdatePatientRequest {
        id: id.clone(),
        expected_version: version,
        reason: "birth month and answers checked with the family".into(),
        region_code: None,
        vital_status: 0,
        objects_to_reuse: None,
        diagnoses: None,
        cde: None,
        sex: 0,
        birth_year_month: None,
    };
    let corrected = app
        .registry
        .update_patient(pb::UpdatePatientRequest {
            sex: pb::Sex::Female as i32,
            birth_year_month: Some("2010-07".into()),
            cde: Some(pb::CommonDataElements {
                contact_for_research: pb::ConsentStatus::Refused as i32,
                ..request.cde.clone().unwrap()
            }),
            ..update(1)
        })
        .await
        .expect("correct")
        .into_inner();
    assert_eq!(corrected.sex, pb::Sex::Female as i32);
    assert_eq!(corrected.birth_year_month, "2010-07");
    assert_eq!(
        corrected.cde.as_ref().unwrap().contact_for_research,
        pb::ConsentStatus::Refused as i32
    );
    let reasons = app.patient_history_reasons(&id).await;
    assert!(
        reasons[1].ends_with("birth month and answers checked with the family"),
        "{reasons:?}"
    );
    let history = app
        .registry
        .get_history(pb::GetHistoryRequest {
            kind: pb::RecordKind::Patient as i32,
            id: id.clone(),
        })
        .await
        .expect("history")
        .into_inner();
    match history.versions[0].record.as_ref() {
        Some(pb::history_entry::Record::Patient(first)) => {
            assert_eq!(
                (first.sex, first.birth_year_month.as_str()),
                (pb::Sex::Male as i32, "2010-05")
            )
        }
        other => panic!("{other:?}"),
    }
    // A correction that would put the onset after today is refused.
    let err = app
        .registry
        .update_patient(pb::UpdatePatientRequest {
            birth_year_month: Some("2026-10".into()),
            ..update(2)
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["cde.age_at_onset.months"]);
    app.stop().await;
}

async fn frameworks_over_their_cap_or_due_for_renewal_are_on_the_worklist(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let today = observatory_store::today(chrono::Utc::now());
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();
    let mut create = async |key: &str, pathway: pb::Pathway, from: String, to: String| {
        app.reference
            .create_framework(pb::CreateFrameworkRequest {
                idempotency_key: key.into(),
                pathway: pathway as i32,
                drug_atc: "L01FA01".into(),
                indication: format!("{key} (test)"),
                orpha_codes: vec!["589".into()],
                authority: if pathway == pb::Pathway::Cpc { "ANSM" } else { "HAS" }.into(),
                decision_reference: key.to_uppercase(),
                valid_from: from,
                valid_to: to,
                status: pb::FrameworkStatus::Granted as i32,
                protocol_type: pb::ProtocolType::PutRd as i32,
                protocol_version: "1".into(),
                follow_up_months: 6,
                source: "test".into(),
                confirmed: true,
                requires_national_rcp: false,
                synthesis_months: 0,
            })
            .await
            .expect("framework")
            .into_inner()
            .meta
            .unwrap()
            .id
    };
    // A CPC granted for four years; an AAP whose renewal deadline (3 months before its end) is
    // in 10 days; one whose deadline passed; one far from it.
    let cpc = create("cpc-4y", pb::Pathway::Cpc, day(-30), day(4 * 365 - 30)).await;
    let due = create("aap-due", pb::Pathway::AapPost, day(-300), day(92 + 10)).await;
    let late = create("aap-late", pb::Pathway::AapPre, day(-300), day(60)).await;
    let far = create("aap-far", pb::Pathway::AapPost, day(-30), day(300)).await;
    let w = app
        .registry
        .get_worklist(pb::GetWorklistRequest { within_days: 30 })
        .await
        .expect("worklist")
        .into_inner();
    let alerts: Vec<(String, i32)> = w
        .frameworks
        .iter()
        .map(|a| {
            (
                a.framework.as_ref().unwrap().meta.as_ref().unwrap().id.clone(),
                a.warning,
            )
        })
        .collect();
    assert!(
        alerts.contains(&(late.clone(), pb::FrameworkWarning::RenewalLate as i32)),
        "{alerts:?}"
    );
    assert!(
        alerts.contains(&(due.clone(), pb::FrameworkWarning::RenewalDue as i32)),
        "{alerts:?}"
    );
    assert!(
        alerts.contains(&(cpc.clone(), pb::FrameworkWarning::ValidityOverCap as i32)),
        "{alerts:?}"
    );
    assert!(
        alerts.iter().all(|(id, _)| *id != far),
        "not within the horizon: {alerts:?}"
    );
    let dates: Vec<&str> = w.frameworks.iter().map(|a| a.date.as_str()).collect();
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted, "soonest date first");
    let due_alert = w
        .frameworks
        .iter()
        .find(|a| a.warning == pb::FrameworkWarning::RenewalDue as i32)
        .expect("due");
    assert!((8..=12).contains(&due_alert.days_left), "{due_alert:?}");

    // Filing the renewal takes the AAP off the list.
    app.reference
        .transition_framework(pb::TransitionFrameworkRequest {
            id: due.clone(),
            expected_version: 1,
            transition: Some(pb::transition_framework_request::Transition::SubmitRenewal(
                pb::transition_framework_request::DatedStep { date: day(0) },
            )),
        })
        .await
        .expect("renewal filed");
    let w = app
        .registry
        .get_worklist(pb::GetWorklistRequest { within_days: 30 })
        .await
        .expect("worklist")
        .into_inner();
    assert!(
        w.frameworks
            .iter()
            .all(|a| a.framework.as_ref().unwrap().meta.as_ref().unwrap().id != due)
    );
    app.stop().await;
}

async fn an_aac_dispensed_before_its_request_starts_before_the_grant_and_is_flagged(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await.meta.unwrap().id;
    let patient = app.patient(70).await.meta.unwrap().id;
    let initiate = |id: &str, date: &str| pb::TransitionEpisodeRequest {
        id: id.into(),
        expected_version: 1,
        transition: Some(te::Transition::Initiate(te::Initiate {
            first_administration_date: date.into(),
            dosage: None,
        })),
    };
    // The pharmacy dispensed on a Saturday night; the request is filed on Monday.
    let mut declaration = app.aac_declaration(&patient, &cohort, &rpps, "dispensed-1");
    declaration.request_date = "2026-01-10".into();
    declaration.authorisation = Some(pb::AuthorisationRequest {
        submitted_date: "2026-01-12".into(),
        reference: String::new(),
    });
    declaration.dispense_first = true;
    let declared = app
        .registry
        .declare_episode(declaration)
        .await
        .expect("declare")
        .into_inner();
    let episode = declared.episode.unwrap();
    assert!(episode.dispense_first);
    let id = episode.meta.unwrap().id;
    let auth = declared.authorisation.unwrap().meta.unwrap().id;
    let started = app
        .registry
        .transition_episode(initiate(&id, "2026-01-10"))
        .await
        .expect("started before the grant")
        .into_inner();
    assert_eq!(started.status, pb::EpisodeStatus::Initiated as i32);
    let flagged = |w: &pb::Worklist| {
        w.dispensed_first
            .iter()
            .map(|x| x.episode.as_ref().unwrap().meta.as_ref().unwrap().id.clone())
            .collect::<Vec<_>>()
    };
    let w = app
        .registry
        .get_worklist(pb::GetWorklistRequest { within_days: 30 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(flagged(&w), vec![id.clone()]);
    assert_eq!(
        w.dispensed_first[0].authorisation.as_ref().unwrap().status,
        pb::AuthorisationStatus::Submitted as i32
    );
    // Granted: regularised, off the list.
    app.registry
        .transition_authorisation(pb::TransitionAuthorisationRequest {
            id: auth,
            expected_version: 1,
            transition: Some(ta::Transition::Grant(ta::Grant {
                decision_date: "2026-01-14".into(),
                valid_from: "2026-01-14".into(),
                valid_to: "2027-01-13".into(),
                reference: "AAC-2026-000777".into(),
            })),
        })
        .await
        .expect("grant");
    let w = app
        .registry
        .get_worklist(pb::GetWorklistRequest { within_days: 30 })
        .await
        .unwrap()
        .into_inner();
    assert!(flagged(&w).is_empty());

    // Without the flag, the first administration still waits for the grant; and the flag
    // applies to per-patient authorisations only.
    let other = app.patient(71).await.meta.unwrap().id;
    let plain = app
        .registry
        .declare_episode(app.aac_declaration(&other, &cohort, &rpps, "plain-1"))
        .await
        .expect("declare")
        .into_inner();
    let plain_id = plain.episode.unwrap().meta.unwrap().id;
    let early = app
        .registry
        .transition_episode(initiate(&plain_id, "2026-01-20"))
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    let third = app.patient(72).await.meta.unwrap().id;
    let mut off_label = app.aac_declaration(&third, &cohort, &rpps, "not-aac");
    off_label.pathway = pb::Pathway::CommonLaw as i32;
    off_label.authorisation = None;
    off_label.dispense_first = true;
    let err = app.registry.declare_episode(off_label).await.unwrap_err();
    assert!(violated_fields(&err).contains(&"dispense_first".to_owned()), "{err:?}");
    app.stop().await;
}

async fn a_baseline_visit_precedes_the_first_administration_and_visits_go_on_after_a_stop(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await.meta.unwrap().id;
    let patient = app.patient(80).await.meta.unwrap().id;
    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&patient, &cohort, &rpps, "baseline-1"))
        .await
        .expect("declare")
        .into_inner();
    let episode = declared.episode.unwrap().meta.unwrap().id;
    let auth = declared.authorisation.unwrap().meta.unwrap().id;
    let visit = |key: &str, date: &str| pb::RecordFollowUpRequest {
        idempotency_key: key.into(),
        episode_id: episode.clone(),
        visit_date: date.into(),
        efficacy: pb::EfficacyAssessment::NotAssessable as i32,
        measures: vec![pb::Measure {
            code: "ABR".into(),
            value: 14.0,
        }],
        weight_kg: 0.0,
        adherence: pb::Adherence::Good as i32,
    };
    let status = async |app: &mut crate::helpers::TestApp| {
        app.registry
            .get_episode(pb::GetRequest { id: episode.clone() })
            .await
            .expect("episode")
            .into_inner()
            .status
    };
    // The request is dated 2026-01-12: a baseline up to 90 days before it, on the declared
    // episode, which stays declared.
    app.registry
        .record_follow_up(visit("baseline", "2026-01-05"))
        .await
        .expect("a baseline visit");
    assert_eq!(status(&mut app).await, pb::EpisodeStatus::Declared as i32);
    let err = app
        .registry
        .record_follow_up(visit("too-early", "2025-09-01"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["visit_date"]);

    app.registry
        .transition_authorisation(pb::TransitionAuthorisationRequest {
            id: auth,
            expected_version: 1,
            transition: Some(ta::Transition::Grant(ta::Grant {
                decision_date: "2026-01-15".into(),
                valid_from: "2026-01-15".into(),
                valid_to: "2027-01-14".into(),
                reference: "AAC-2026-000880".into(),
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
    app.registry
        .record_follow_up(visit("m1", "2026-02-20"))
        .await
        .expect("a visit");
    assert_eq!(status(&mut app).await, pb::EpisodeStatus::Ongoing as i32);
    app.registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode.clone(),
            expected_version: 3,
            transition: Some(te::Transition::Stop(te::Stop {
                date: "2026-03-01".into(),
                reason: pb::StopReason::PatientChoice as i32,
            })),
        })
        .await
        .expect("stop");
    // Long-term follow-up after the stop: recorded, the episode stays stopped.
    app.registry
        .record_follow_up(visit("after-stop", "2026-09-01"))
        .await
        .expect("a visit after the stop");
    assert_eq!(status(&mut app).await, pb::EpisodeStatus::Stopped as i32);
    let visits = app
        .registry
        .list_follow_ups(pb::ListByEpisodeRequest {
            episode_id: episode.clone(),
            page: None,
        })
        .await
        .expect("visits")
        .into_inner()
        .follow_ups;
    assert_eq!(visits.len(), 3);
    app.stop().await;
}

/// A centre of two filières (a university hospital site that is a reference centre of one
/// network and a competence centre of another): listed under each, corrected to join a third
/// with a reason in history; a filière named twice, none at all or an unknown one is refused by
/// field, and so is a correction that would leave it in none.
async fn a_centre_belongs_to_several_filieres_and_is_listed_under_each(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let created = app
        .reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "chu".into(),
            finess: "310000013".into(),
            name: "CHU Toulouse".into(),
            r#type: pb::CentreType::CrmrConstitutive as i32,
            region_code: "76".into(),
            filieres: vec!["MHEMO".into(), "FILNEMUS".into()],
        })
        .await
        .expect("a centre of two filières")
        .into_inner();
    assert_eq!(created.filieres, ["FILNEMUS", "MHEMO"], "in code order");
    let listed = |app: &mut crate::helpers::TestApp, filiere: &'static str| {
        let mut reference = app.reference.clone();
        async move {
            reference
                .list_centres(pb::ListCentresRequest {
                    filiere: filiere.into(),
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .centres
                .into_iter()
                .map(|c| c.finess)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(&mut app, "MHEMO").await, ["310000013"]);
    assert_eq!(listed(&mut app, "FILNEMUS").await, ["310000013"]);
    assert!(listed(&mut app, "FILSLAN").await.is_empty());
    // Cohorts keep their one filière, and are listed by it.
    let cohort = app.aac_cohort().await.meta.expect("meta").id;
    let cohorts = app
        .manager
        .list_cohorts(pb::ListCohortsRequest {
            filiere: "MHEMO".into(),
            ..Default::default()
        })
        .await
        .expect("cohorts of a filière")
        .into_inner()
        .cohorts;
    assert_eq!(
        cohorts
            .into_iter()
            .map(|c| c.meta.expect("meta").id)
            .collect::<Vec<_>>(),
        [cohort]
    );

    let joined = app
        .reference
        .update_centre(pb::UpdateCentreRequest {
            finess: "310000013".into(),
            expected_version: 1,
            reason: "labelled competence centre of FILSLAN".into(),
            filieres: Some(pb::FiliereList {
                filieres: vec!["FILNEMUS".into(), "MHEMO".into(), "FILSLAN".into()],
            }),
            ..Default::default()
        })
        .await
        .expect("joins a third filière")
        .into_inner();
    assert_eq!(joined.filieres, ["FILNEMUS", "FILSLAN", "MHEMO"]);
    assert_eq!(listed(&mut app, "FILSLAN").await, ["310000013"]);
    let history = app
        .registry
        .get_history(pb::GetHistoryRequest {
            kind: pb::RecordKind::Centre as i32,
            id: "310000013".into(),
        })
        .await
        .expect("history")
        .into_inner()
        .versions;
    let versions: Vec<(Vec<String>, String)> = history
        .into_iter()
        .filter_map(|v| match v.record {
            Some(pb::history_entry::Record::Centre(c)) => {
                let meta = c.meta.expect("meta");
                Some((c.filieres, meta.reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].0, ["FILNEMUS", "MHEMO"], "the first version is kept");
    assert_eq!(versions[1].1, "UpdateCentre: labelled competence centre of FILSLAN");

    let err = app
        .reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "bad".into(),
            finess: "130000011".into(),
            name: "n".into(),
            r#type: pb::CentreType::Ccmr as i32,
            region_code: "93".into(),
            filieres: vec!["MHEMO".into(), "NOPE".into(), "MHEMO".into()],
        })
        .await
        .expect_err("unknown and repeated filières");
    assert_eq!(violated_fields(&err), ["filieres[1]", "filieres[2]"]);
    let err = app
        .reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "none".into(),
            finess: "130000011".into(),
            name: "n".into(),
            r#type: pb::CentreType::Ccmr as i32,
            region_code: "93".into(),
            filieres: vec![],
        })
        .await
        .expect_err("no filière");
    assert_eq!(violated_fields(&err), ["filieres"]);
    let err = app
        .reference
        .update_centre(pb::UpdateCentreRequest {
            finess: "310000013".into(),
            expected_version: 2,
            reason: "leaves every network".into(),
            filieres: Some(pb::FiliereList { filieres: vec![] }),
            ..Default::default()
        })
        .await
        .expect_err("a centre stays in one filière at least");
    assert_eq!(violated_fields(&err), ["filieres.filieres"]);
    app.stop().await;
}

/// A gene therapy is given once: its episode says so (from the reference release), it is not
/// stopped for a reason once given, its long-term follow-up ends; END_OF_FOLLOW_UP ends no
/// chronic treatment.
async fn a_one_shot_treatment_is_given_once_and_its_follow_up_ends(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let drugs = app
        .reference
        .list_drugs(pb::ListDrugsRequest {
            atc_prefix: "M09AX".into(),
            ..Default::default()
        })
        .await
        .expect("drugs")
        .into_inner()
        .drugs;
    let given_once: Vec<&str> = drugs
        .iter()
        .filter(|d| d.single_administration)
        .map(|d| d.atc.as_str())
        .collect();
    assert_eq!(given_once, ["M09AX09"], "onasemnogene, of the SMA drugs");
    let cohort = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: "zolgensma".into(),
            name: "Onasemnogene abeparvovec, SMA".into(),
            filiere: "FILNEMUS".into(),
            pathway: pb::Pathway::CommonLaw as i32,
            drug_atc: "M09AX09".into(),
            orpha_codes: vec!["70".into()],
            framework_id: String::new(),
            follow_up_months: 6,
        })
        .await
        .expect("a gene therapy cohort")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let patient = app.patient(81).await.meta.expect("meta").id;
    let mut declaration = app.aac_declaration(&patient, &cohort, &rpps, "gene-1");
    declaration.pathway = pb::Pathway::CommonLaw as i32;
    declaration.indication_orpha_code = "70".into();
    declaration.authorisation = None;
    declaration.dosage = Some(pb::Dosage {
        dose: 1.1e14,
        unit: "vg/kg".into(),
        frequency: "once".into(),
        route: pb::Route::Intravenous as i32,
    });
    let episode = app
        .registry
        .declare_episode(declaration)
        .await
        .expect("declared")
        .into_inner()
        .episode
        .expect("episode");
    assert!(episode.single_administration, "the episode is a one-shot treatment");
    let id = episode.meta.expect("meta").id;
    let stop = |version: i64, reason: pb::StopReason| pb::TransitionEpisodeRequest {
        id: id.clone(),
        expected_version: version,
        transition: Some(te::Transition::Stop(te::Stop {
            date: "2026-06-01".into(),
            reason: reason as i32,
        })),
    };
    // Not given yet: END_OF_FOLLOW_UP ends nothing.
    let err = app
        .registry
        .transition_episode(stop(1, pb::StopReason::EndOfFollowUp))
        .await
        .expect_err("nothing to follow yet");
    assert_eq!(violated_fields(&err), ["stop.reason"]);
    app.registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: id.clone(),
            expected_version: 1,
            transition: Some(te::Transition::Initiate(te::Initiate {
                first_administration_date: "2026-01-20".into(),
                dosage: None,
            })),
        })
        .await
        .expect("the infusion");
    let err = app
        .registry
        .transition_episode(stop(2, pb::StopReason::Inefficacy))
        .await
        .expect_err("a one-shot treatment given is not stopped for a reason");
    assert_eq!(violated_fields(&err), ["stop.reason"]);
    assert!(err.message().contains("END_OF_FOLLOW_UP"), "{}", err.message());
    let ended = app
        .registry
        .transition_episode(stop(2, pb::StopReason::EndOfFollowUp))
        .await
        .expect("the follow-up ends")
        .into_inner();
    assert_eq!(ended.status, pb::EpisodeStatus::Stopped as i32);
    assert_eq!(ended.stop_reason, pb::StopReason::EndOfFollowUp as i32);

    // A chronic treatment is stopped for a reason, never by END_OF_FOLLOW_UP.
    let aac = app.aac_cohort().await.meta.expect("meta").id;
    let other = app.patient(82).await.meta.expect("meta").id;
    let chronic = app
        .registry
        .declare_episode(app.aac_declaration(&other, &aac, &rpps, "chronic-1"))
        .await
        .expect("declared")
        .into_inner()
        .episode
        .expect("episode");
    assert!(!chronic.single_administration);
    let err = app
        .registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: chronic.meta.expect("meta").id,
            expected_version: 1,
            transition: Some(te::Transition::Stop(te::Stop {
                date: "2026-02-01".into(),
                reason: pb::StopReason::EndOfFollowUp as i32,
            })),
        })
        .await
        .expect_err("not a one-shot treatment");
    assert_eq!(violated_fields(&err), ["stop.reason"]);
    app.stop().await;
}
