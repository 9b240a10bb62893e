//! Scopes, tried on every RPC: each role, bound to one side of a two-centre, two-filière
//! registry, calls every RPC on records of its own side and of the other. Only calls its role
//! may make succeed, and only on its side (lists show only its side); out-of-scope calls are
//! PERMISSION_DENIED, like calls on records that do not exist, and store nothing.

use chrono::Utc;
use observatory_domain::access::Role;
use observatory_grpc::access::RULES;
use observatory_proto::v1::{
    self as pb, registry_service_client::RegistryServiceClient, transition_authorisation_request as ta,
    transition_episode_request as te,
};
use observatory_store::report_runs::{NewReportRun, RunTrigger};
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};

use crate::helpers::{Backend, Bearer, TEST_CENTRE, TestApp, rpps, scoped_token, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    a_patient_joins_another_centre_by_transfer_only,
    every_rpc_serves_each_role_its_own_side_only,
    the_store_lists_and_reaches_as_the_scope_rule_says,
);

/// A centre with a prescriber there, a cohort of the centre's filière, and a patient whose
/// episode at that centre has an authorisation, a follow-up, an adverse event; and a report run
/// limited to the filière.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    pub(crate) rpps: String,
    pub(crate) filiere: &'static str,
    pub(crate) cohort: String,
    pub(crate) patient: String,
    pub(crate) episode: String,
    pub(crate) authorisation: String,
    pub(crate) follow_up: String,
    pub(crate) adverse_event: String,
    pub(crate) run: String,
}

/// A token under test, and the side it is bound to (`None`: bound to no side).
struct Caller {
    who: &'static str,
    role: Role,
    secret: String,
    side: Option<Which>,
    /// Bound to centres (it reads the whole cohort catalogue).
    centre_bound: bool,
    /// A national analyst: the cohorts and report runs of every filière, no patient.
    national: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    A,
    B,
}

/// Centre B, of the FILNEMUS filière (centre A is the test centre, of MHEMO).
pub(crate) const CENTRE_B: &str = "690781810";

/// Builds one side, writing as `prescriber` (a prescriber at its centre).
async fn build_side(
    app: &mut TestApp,
    prescriber: &mut RegistryServiceClient<InterceptedService<Channel, Bearer>>,
    centre: &str,
    rpps: String,
    filiere: &'static str,
) -> Side {
    let cohort = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: format!("cohort-{filiere}"),
            name: format!("Concizumab AAC ({filiere})"),
            filiere: filiere.into(),
            pathway: pb::Pathway::Aac as i32,
            drug_atc: "B02BX07".into(),
            orpha_codes: vec!["98878".into()],
            framework_id: String::new(),
            follow_up_months: 3,
        })
        .await
        .expect("cohort")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let patient = prescriber
        .register_patient(pb::RegisterPatientRequest {
            idempotency_key: format!("patient-{centre}"),
            subject: Some(pb::register_patient_request::Subject::Idmr(format!(
                "{:020}",
                centre.parse::<u64>().expect("digits")
            ))),
            sex: pb::Sex::Female as i32,
            birth_year_month: "2012-03".into(),
            region_code: "11".into(),
            objects_to_reuse: false,
            diagnoses: vec![],
            cde: None,
        })
        .await
        .expect("patient")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let declared = prescriber
        .declare_episode(app.aac_declaration(&patient, &cohort, &rpps, &format!("episode-{centre}")))
        .await
        .expect("declare")
        .into_inner();
    let episode = declared.episode.expect("episode").meta.expect("meta").id;
    let authorisation = declared.authorisation.expect("authorisation").meta.expect("meta").id;
    prescriber
        .transition_authorisation(pb::TransitionAuthorisationRequest {
            id: authorisation.clone(),
            expected_version: 1,
            transition: Some(ta::Transition::Grant(ta::Grant {
                decision_date: "2026-01-15".into(),
                valid_from: "2026-01-15".into(),
                valid_to: "2026-12-31".into(),
                reference: "AAC-2026-000001".into(),
            })),
        })
        .await
        .expect("grant");
    prescriber
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
    let follow_up = prescriber
        .record_follow_up(follow_up_request(&episode, &format!("fu-{centre}")))
        .await
        .expect("follow-up")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let adverse_event = prescriber
        .record_adverse_event(adverse_event_request(&episode, &format!("ae-{centre}")))
        .await
        .expect("adverse event")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    // A report run limited to the filière, as accepted (its outputs are not needed here).
    let now = Utc::now();
    let run = NewReportRun {
        id: uuid::Uuid::now_v7().to_string(),
        requested_at: now,
        requested_by: "analyst:test".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        trigger: RunTrigger::Request,
        schedule: None,
        attempt: 1,
        idempotency_key: None,
        fingerprint: "0".repeat(64),
        period_label: "2026-Q3".into(),
        as_of: now,
        filiere: Some(filiere.to_owned()),
        parameters: serde_json::json!({
            "period_from": "2026-07-01", "period_to": "2026-09-30", "as_of": null, "threshold": 10,
            "csv": "Standard", "scope": {"filiere": filiere, "cohort": null}
        }),
        out_dir: "/nonexistent".into(),
    };
    app.store.record_report_run(&run).await.expect("run");
    Side {
        rpps,
        filiere,
        cohort,
        patient,
        episode,
        authorisation,
        follow_up,
        adverse_event,
        run: run.id,
    }
}

pub(crate) fn follow_up_request(episode: &str, key: &str) -> pb::RecordFollowUpRequest {
    pb::RecordFollowUpRequest {
        idempotency_key: key.into(),
        episode_id: episode.into(),
        visit_date: "2026-04-20".into(),
        efficacy: pb::EfficacyAssessment::Improved as i32,
        measures: vec![],
        weight_kg: 40.0,
        adherence: pb::Adherence::Good as i32,
    }
}

fn adverse_event_request(episode: &str, key: &str) -> pb::RecordAdverseEventRequest {
    pb::RecordAdverseEventRequest {
        idempotency_key: key.into(),
        episode_id: episode.into(),
        onset_date: "2026-05-02".into(),
        meddra_pt_code: "10022086".into(),
        meddra_soc_code: String::new(),
        serious: false,
        outcome: pb::AeOutcome::Recovered as i32,
        causality: pb::Causality::PossiblyRelated as i32,
        pv_declaration_date: String::new(),
        pv_reference: String::new(),
        pv_receiver: String::new(),
        case_details: None,
    }
}

/// How an RPC relates to scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Bound to no centre or filière: any caller of an allowed role gets past the access check.
    Unbound,
    /// On one record (or a new one) of a side: only callers of that side.
    Targeted,
    /// A cohort's catalogue entry: callers bound to centres read every cohort.
    CohortEntry,
    /// A list: answered to every caller of an allowed role, with rows of its side only.
    Listing,
}

/// The request an RPC gets aimed at `side`, and how it relates to scopes. Writes on existing
/// records give a stale version, so that they pass the access check and then change nothing.
/// Panics on an RPC it does not know: a new RPC must be added here.
fn request(path: &str, s: &Side, tag: &str) -> (Kind, Bytes) {
    let method = path.rsplit('/').next().expect("method");
    let get = |id: &str| pb::GetRequest { id: id.into() }.encode_to_vec();
    let stale = 999;
    let (kind, body) = match method {
        // Reference data and the audit trail: the role rule alone (empty requests, answered
        // INVALID_ARGUMENT or served).
        "CreateCentre"
        | "GetCentre"
        | "ListCentres"
        | "CreatePrescriber"
        | "GetPrescriber"
        | "ListPrescribers"
        | "ListDrugs"
        | "ListDiseases"
        | "ListReferenceReleases"
        | "CreateFramework"
        | "GetFramework"
        | "TransitionFramework"
        | "UpdateCentre"
        | "UpdatePrescriber"
        | "ListFrameworks"
        | "ExportAudit"
        | "VerifyAudit" => (Kind::Unbound, Vec::new()),
        // A patient belongs where its episodes will be: registering is bound to no centre.
        "RegisterPatient" => (Kind::Unbound, Vec::new()),
        // The exchange's items, changes and FHIR resources are scoped one by one, inside an answered stream
        // (exchange.rs tries them on both sides): the call itself follows the role rule.
        "Import" | "WatchChanges" | "ExportFhir" => (Kind::Unbound, Vec::new()),
        "CreateCohort" => (
            Kind::Targeted,
            pb::CreateCohortRequest {
                idempotency_key: format!("cohort-{tag}"),
                name: format!("Cohort of {tag}"),
                filiere: s.filiere.into(),
                pathway: pb::Pathway::OffLabel as i32,
                drug_atc: "B02BX07".into(),
                orpha_codes: vec!["98878".into()],
                framework_id: String::new(),
                follow_up_months: 6,
            }
            .encode_to_vec(),
        ),
        "GetCohort" => (Kind::CohortEntry, get(&s.cohort)),
        "ListCohorts" | "ListEpisodes" | "ListPatients" | "ListReportRuns" | "GetWorklist" => {
            (Kind::Listing, Vec::new())
        }
        "TransitionCohort" => (
            Kind::Targeted,
            pb::TransitionCohortRequest {
                id: s.cohort.clone(),
                expected_version: stale,
                transition: pb::CohortTransition::Close as i32,
            }
            .encode_to_vec(),
        ),
        "GetPatient" => (Kind::Targeted, get(&s.patient)),
        "UpdatePatient" => (
            Kind::Targeted,
            pb::UpdatePatientRequest {
                id: s.patient.clone(),
                expected_version: stale,
                reason: "scope check".into(),
                objects_to_reuse: Some(true),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "MergePatients" => (
            Kind::Targeted,
            pb::MergePatientsRequest {
                kept_id: s.patient.clone(),
                kept_version: stale,
                merged_id: s.patient.clone(),
                merged_version: stale,
                reason: "scope check".into(),
            }
            .encode_to_vec(),
        ),
        "RequestRcpReview" => (
            Kind::Targeted,
            pb::RequestRcpReviewRequest {
                patient_id: s.patient.clone(),
                expected_version: stale,
                level: pb::RcpLevel::Local as i32,
                centre_finess: crate::helpers::TEST_CENTRE.into(),
                drug_atc: "B02BX07".into(),
                requested_date: "2026-03-01".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "RecordRcpOpinion" => (
            Kind::Targeted,
            pb::RecordRcpOpinionRequest {
                patient_id: s.patient.clone(),
                expected_version: stale,
                review_id: "0193a000-0000-7000-8000-0000000000aa".into(),
                meeting_date: "2026-03-02".into(),
                opinion: pb::RcpOpinion::Favourable as i32,
                conditions: String::new(),
            }
            .encode_to_vec(),
        ),
        "DeclareEpisode" => (
            Kind::Targeted,
            pb::DeclareEpisodeRequest {
                idempotency_key: format!("episode-{tag}"),
                patient_id: s.patient.clone(),
                cohort_id: s.cohort.clone(),
                pathway: pb::Pathway::Aac as i32,
                indication_orpha_code: "98878".into(),
                prescriber_rpps: s.rpps.clone(),
                request_date: "2026-02-01".into(),
                rcp: Some(pb::Rcp {
                    date: "2026-01-30".into(),
                    opinion: pb::RcpOpinion::Favourable as i32,
                    level: 0,
                }),
                authorisation: Some(pb::AuthorisationRequest {
                    submitted_date: "2026-02-01".into(),
                    reference: String::new(),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "GetEpisode" => (Kind::Targeted, get(&s.episode)),
        "TransitionEpisode" => (
            Kind::Targeted,
            pb::TransitionEpisodeRequest {
                id: s.episode.clone(),
                expected_version: stale,
                transition: Some(te::Transition::LostToFollowUp(te::LostToFollowUp {
                    date: "2026-06-01".into(),
                })),
            }
            .encode_to_vec(),
        ),
        "GetAuthorisation" => (Kind::Targeted, get(&s.authorisation)),
        "TransitionAuthorisation" => (
            Kind::Targeted,
            pb::TransitionAuthorisationRequest {
                id: s.authorisation.clone(),
                expected_version: stale,
                transition: Some(ta::Transition::Suspend(ta::DatedStep {
                    date: "2026-06-01".into(),
                })),
            }
            .encode_to_vec(),
        ),
        "RecordFollowUp" => (
            Kind::Targeted,
            follow_up_request(&s.episode, &format!("fu-{tag}")).encode_to_vec(),
        ),
        "RecordAdverseEvent" => (
            Kind::Targeted,
            adverse_event_request(&s.episode, &format!("ae-{tag}")).encode_to_vec(),
        ),
        "GetFollowUp" => (Kind::Targeted, get(&s.follow_up)),
        "GetAdverseEvent" => (Kind::Targeted, get(&s.adverse_event)),
        // One event's case file (a period's cases are kept to the caller's scope: the
        // pharmacovigilance scenario checks it).
        "ExportAdverseEvents" => (
            Kind::Targeted,
            pb::ExportAdverseEventsRequest {
                selection: Some(pb::export_adverse_events_request::Selection::AdverseEventId(
                    s.adverse_event.clone(),
                )),
                format: pb::CaseFormat::E2bXml as i32,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "ListFollowUps" | "ListAdverseEvents" => (
            Kind::Targeted,
            pb::ListByEpisodeRequest {
                episode_id: s.episode.clone(),
                page: None,
            }
            .encode_to_vec(),
        ),
        "UpdateAdverseEvent" => (
            Kind::Targeted,
            pb::UpdateAdverseEventRequest {
                id: s.adverse_event.clone(),
                expected_version: stale,
                reason: "scope check".into(),
                serious: Some(true),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "UpdateEpisode" => (
            Kind::Targeted,
            pb::UpdateEpisodeRequest {
                id: s.episode.clone(),
                expected_version: stale,
                reason: "scope check".into(),
                prescriber_rpps: Some(crate::helpers::rpps(1)),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "UpdateAuthorisation" => (
            Kind::Targeted,
            pb::UpdateAuthorisationRequest {
                id: s.authorisation.clone(),
                expected_version: stale,
                reason: "scope check".into(),
                reference: Some("scope check".into()),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "UpdateFollowUp" => (
            Kind::Targeted,
            pb::UpdateFollowUpRequest {
                id: s.follow_up.clone(),
                expected_version: stale,
                reason: "scope check".into(),
                weight_kg: Some(40.0),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "GetHistory" => (
            Kind::Targeted,
            pb::GetHistoryRequest {
                kind: pb::RecordKind::Patient as i32,
                id: s.patient.clone(),
            }
            .encode_to_vec(),
        ),
        "RunReport" => (
            Kind::Targeted,
            pb::RunReportRequest {
                period: "2026-Q3".into(),
                filiere: s.filiere.into(),
                idempotency_key: format!("run-{tag}"),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "RunSynthesis" => (
            Kind::Targeted,
            pb::RunSynthesisRequest {
                subject: Some(pb::run_synthesis_request::Subject::CohortId(s.cohort.clone())),
                period: "2026-Q3".into(),
                idempotency_key: format!("synthesis-{tag}"),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        "GetReportRun" => (
            Kind::Targeted,
            pb::GetReportRunRequest { run_id: s.run.clone() }.encode_to_vec(),
        ),
        "DownloadReportFile" => (
            Kind::Targeted,
            pb::DownloadReportFileRequest {
                run_id: s.run.clone(),
                file: "manifest.json".into(),
            }
            .encode_to_vec(),
        ),
        other => panic!("{other} is not in the scope matrix: add its request to `request`"),
    };
    (kind, Bytes::from(body))
}

/// Passes encoded messages through, so one function can call every RPC.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls `path` with `body` as the holder of `token`: the answer, or for a stream its first
/// message.
async fn call(channel: &Channel, path: &str, token: &str, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    let route = http::uri::PathAndQuery::try_from(path.to_owned()).expect("path");
    if path.ends_with("/DownloadReportFile") {
        let mut stream = grpc.server_streaming(request, route, RawCodec).await?.into_inner();
        return Ok(stream.message().await?.unwrap_or_default());
    }
    Ok(grpc.unary(request, route, RawCodec).await?.into_inner())
}

/// Ids a list answered, by side: (ids of side A shown, ids of side B shown).
fn listed(method: &str, body: &Bytes, a: &Side, b: &Side) -> (bool, bool) {
    let ids: Vec<String> = match method {
        "ListCohorts" => pb::ListCohortsResponse::decode(body.clone())
            .expect("decode")
            .cohorts
            .into_iter()
            .filter_map(|c| c.meta.map(|m| m.id))
            .collect(),
        "ListEpisodes" => pb::ListEpisodesResponse::decode(body.clone())
            .expect("decode")
            .episodes
            .into_iter()
            .filter_map(|e| e.meta.map(|m| m.id))
            .collect(),
        "GetWorklist" => {
            let w = pb::Worklist::decode(body.clone()).expect("decode");
            w.expiring_authorisations
                .into_iter()
                .filter_map(|x| x.episode)
                .chain(w.overdue_follow_ups.into_iter().filter_map(|x| x.episode))
                .chain(w.never_initiated)
                .filter_map(|e| e.meta.map(|m| m.id))
                .collect()
        }
        "ListPatients" => pb::ListPatientsResponse::decode(body.clone())
            .expect("decode")
            .patients
            .into_iter()
            .filter_map(|p| p.meta.map(|m| m.id))
            .collect(),
        "ListReportRuns" => pb::ListReportRunsResponse::decode(body.clone())
            .expect("decode")
            .runs
            .into_iter()
            .map(|r| r.run_id)
            .collect(),
        other => panic!("{other} is no list"),
    };
    let shows = |s: &Side| match method {
        "ListCohorts" => ids.contains(&s.cohort),
        "ListEpisodes" | "GetWorklist" => ids.contains(&s.episode),
        "ListPatients" => ids.contains(&s.patient),
        _ => ids.contains(&s.run),
    };
    (shows(a), shows(b))
}

/// Centre A (the test centre, MHEMO) and centre B (FILNEMUS), each with a prescriber and a
/// side of records; gives the sides and a registry client as B's prescriber (A's is
/// `app.registry`).
pub(crate) async fn two_sides(
    app: &mut TestApp,
) -> (Side, Side, RegistryServiceClient<InterceptedService<Channel, Bearer>>) {
    let (_, rpps_a) = app.centre_and_prescriber().await;
    app.reference
        .create_centre(pb::CreateCentreRequest {
            idempotency_key: "centre-b".into(),
            finess: CENTRE_B.into(),
            name: "Centre de référence des maladies neuromusculaires".into(),
            r#type: pb::CentreType::CrmrConstitutive as i32,
            region_code: "84".into(),
            filieres: vec!["FILNEMUS".into()],
        })
        .await
        .expect("centre B");
    let rpps_b = rpps(2);
    app.reference
        .create_prescriber(pb::CreatePrescriberRequest {
            idempotency_key: "prescriber-b".into(),
            rpps: rpps_b.clone(),
            specialty: "neurology".into(),
            centre_finess: CENTRE_B.into(),
        })
        .await
        .expect("prescriber B");
    let secret_b = scoped_token(&app.store, Role::Prescriber, &[CENTRE_B], &[]).await;
    let mut writer_b = RegistryServiceClient::new(InterceptedService::new(app.channel.clone(), Bearer::new(&secret_b)));
    let mut writer_a = app.registry.clone();
    let a = build_side(app, &mut writer_a, TEST_CENTRE, rpps_a, "MHEMO").await;
    let b = build_side(app, &mut writer_b, CENTRE_B, rpps_b, "FILNEMUS").await;
    (a, b, writer_b)
}

/// A patient followed at centre B joins centre A only when B transfers an episode there; until
/// then, A's prescriber cannot declare an episode for them, nor learn anything of them.
async fn a_patient_joins_another_centre_by_transfer_only(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (a, b, mut prescriber_b) = two_sides(&mut app).await;
    let early = app.aac_declaration(&b.patient, &a.cohort, &a.rpps, "join-early");
    let after_transfer = app.aac_declaration(&b.patient, &a.cohort, &a.rpps, "join-after-transfer");
    let unknown_patient = app.aac_declaration("01939a2c-0000-7000-8000-000000000000", &a.cohort, &a.rpps, "join-none");
    let refused = app
        .registry
        .declare_episode(early)
        .await
        .expect_err("a patient of another centre");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(!refused.message().contains(&b.episode), "{refused:?}");
    let unknown = app
        .registry
        .declare_episode(unknown_patient)
        .await
        .expect_err("an unknown patient");
    assert!(
        matches!(unknown.code(), Code::NotFound | Code::PermissionDenied),
        "{unknown:?}"
    );

    // B transfers its episode to A: A's prescriber may now declare the patient's next episode,
    // and then reads the patient.
    let episode = prescriber_b
        .get_episode(pb::GetRequest { id: b.episode.clone() })
        .await
        .expect("episode")
        .into_inner();
    prescriber_b
        .transition_episode(pb::TransitionEpisodeRequest {
            id: b.episode.clone(),
            expected_version: episode.meta.expect("meta").version,
            transition: Some(te::Transition::Transfer(te::Transfer {
                date: "2026-07-01".into(),
                to_centre_finess: TEST_CENTRE.into(),
            })),
        })
        .await
        .expect("transfer");
    let joined = app
        .registry
        .declare_episode(after_transfer)
        .await
        .expect("declared after the transfer")
        .into_inner();
    assert_eq!(joined.episode.expect("episode").centre_finess, TEST_CENTRE);
    app.registry
        .get_patient(pb::GetRequest { id: b.patient.clone() })
        .await
        .expect("the patient is now followed at A");
    app.stop().await;
}

async fn every_rpc_serves_each_role_its_own_side_only(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (a, b, _) = two_sides(&mut app).await;

    let caller =
        async |who: &'static str, role: Role, centres: &[&str], filieres: &[&str], side: Option<Which>| Caller {
            who,
            role,
            secret: scoped_token(&app.store, role, centres, filieres).await,
            side,
            centre_bound: !centres.is_empty(),
            national: role == Role::NationalAnalyst,
        };
    let callers = [
        caller("prescriber at A", Role::Prescriber, &[TEST_CENTRE], &[], Some(Which::A)).await,
        caller("prescriber at B", Role::Prescriber, &[CENTRE_B], &[], Some(Which::B)).await,
        caller(
            "data manager of MHEMO",
            Role::DataManager,
            &[],
            &["MHEMO"],
            Some(Which::A),
        )
        .await,
        caller("analyst of MHEMO", Role::Analyst, &[], &["MHEMO"], Some(Which::A)).await,
        caller("analyst of FILNEMUS", Role::Analyst, &[], &["FILNEMUS"], Some(Which::B)).await,
        caller("partner at B", Role::Partner, &[CENTRE_B], &[], Some(Which::B)).await,
        caller("partner of FILNEMUS", Role::Partner, &[], &["FILNEMUS"], Some(Which::B)).await,
        caller("admin", Role::Admin, &[], &[], None).await,
        caller("national analyst", Role::NationalAnalyst, &[], &[], None).await,
    ];

    let paths: Vec<&str> = RULES.iter().map(|(p, _)| p.as_str()).collect();
    // Out-of-scope calls first: none may store anything; each leaves one event, its refusal.
    let before = (app.row_count().await, app.store.audit_head().await.expect("head"));
    let mut refused = 0;
    let mut checked = 0;
    for pass in ["out of scope", "in scope"] {
        for c in &callers {
            for path in &paths {
                let method = path.rsplit('/').next().expect("method");
                let allowed = RULES.iter().any(|(p, roles)| p == path && roles.contains(&c.role));
                for (which, target) in [(Which::A, &a), (Which::B, &b)] {
                    let own = c.side == Some(which);
                    let tag = format!("{}-{method}", c.who.replace(' ', "-"));
                    let (kind, body) = request(path, target, &tag);
                    let in_scope = match kind {
                        Kind::Unbound | Kind::Listing => true,
                        Kind::CohortEntry => own || c.centre_bound || c.national,
                        Kind::Targeted => own || c.national,
                    };
                    if (pass == "in scope") != (allowed && in_scope) {
                        continue;
                    }
                    checked += 1;
                    let answer = call(&app.channel, path, &c.secret, body).await;
                    let context = format!("{path} as {} on side {which:?}", c.who);
                    if !(allowed && in_scope) {
                        match answer {
                            Ok(_) => panic!("{context}: served, where PERMISSION_DENIED was due"),
                            Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{context}: {status:?}"),
                        }
                        refused += 1;
                        continue;
                    }
                    match (kind, answer) {
                        (Kind::Listing, Ok(body)) => {
                            let sees = |s: Which| {
                                c.side == Some(s) || (method == "ListCohorts" && c.centre_bound) || c.national
                            };
                            let shown = listed(method, &body, &a, &b);
                            if method == "GetWorklist" {
                                // A side's episode is on its worklist only when something is due:
                                // never on another side's.
                                assert!(!shown.0 || sees(Which::A), "{context}: {shown:?}");
                                assert!(!shown.1 || sees(Which::B), "{context}: {shown:?}");
                            } else {
                                assert_eq!(shown, (sees(Which::A), sees(Which::B)), "{context}");
                            }
                        }
                        (Kind::Listing, Err(status)) => panic!("{context}: {status:?}"),
                        (_, Ok(_)) => {}
                        (_, Err(status)) => assert!(
                            !matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated),
                            "{context}: {status:?}"
                        ),
                    }
                    // Reads of records in scope are served, not merely let through.
                    if method.starts_with("Get") && kind != Kind::Unbound {
                        let again = request(path, target, "again").1;
                        call(&app.channel, path, &c.secret, again)
                            .await
                            .unwrap_or_else(|s| panic!("{context}: {s:?}"));
                    }
                }
            }
        }
        if pass == "out of scope" {
            assert_eq!(app.row_count().await, before.0, "an out-of-scope call stored something");
            let from = before.1.as_ref().map_or(0, |h| h.seq);
            let events = app
                .store
                .audit_events(
                    chrono::DateTime::UNIX_EPOCH,
                    chrono::Utc::now() + chrono::Duration::hours(1),
                    from,
                    100_000,
                )
                .await
                .expect("events");
            assert_eq!(events.len(), refused, "one event per refused call");
            for e in &events {
                assert_eq!(e.reason, "refused: PERMISSION_DENIED", "{e:?}");
                assert_eq!(e.parsed_targets().expect("targets"), [], "{e:?}");
            }
        }
    }
    assert!(checked > paths.len() * callers.len(), "{checked} calls checked");
    app.stop().await;
}

/// The store's side of scopes, against an oracle computed from the records themselves on a
/// seeded registry of several centres in both filières: lists within a scope hold exactly the
/// rows the scope covers, and every record reaches where its episode is.
async fn the_store_lists_and_reaches_as_the_scope_rule_says(backend: Backend) {
    use std::collections::{BTreeMap, BTreeSet};

    use observatory_domain::access::{Reach, Scope};
    use observatory_domain::codes::{Filiere, Finess};
    use observatory_domain::model::{AdverseEvent, Authorisation, Cohort, Episode, FollowUp, RecordKind};
    use observatory_server::seed::{SeedOptions, seed};
    use observatory_store::{CohortFilter, EpisodeFilter, PageRequest, Store, StoreOptions, Stored, Versioned};

    let (url, _dir) = crate::helpers::fresh_database(backend).await;
    let store = Store::connect(&StoreOptions::new(&url)).await.expect("connect");
    store.migrate().await.expect("migrate");
    let options = SeedOptions {
        patients: 120,
        seed: 11,
        until: chrono::NaiveDate::from_ymd_opt(2026, 10, 31).expect("date"),
        concurrency: 16,
    };
    seed(&crate::helpers::app_of(&store).await, &options)
        .await
        .expect("seed");

    async fn all<T: Stored>(store: &Store) -> Vec<Versioned<T>> {
        let mut out = Vec::new();
        store
            .scan_as_of::<T>(Utc::now(), 500, |batch| {
                out.extend(batch);
                Ok(())
            })
            .await
            .expect("scan");
        out
    }
    let cohorts = all::<Cohort>(&store).await;
    let filiere_of: BTreeMap<&str, &Filiere> = cohorts
        .iter()
        .map(|c| (c.meta.id.as_str(), &c.record.filiere))
        .collect();
    let episodes = all::<Episode>(&store).await;
    let reach_of_episode: BTreeMap<&str, Reach> = episodes
        .iter()
        .map(|e| {
            let filiere = filiere_of[e.record.cohort_id.as_str()].clone();
            (
                e.meta.id.as_str(),
                Reach::episode(e.record.centre_finess.clone(), filiere),
            )
        })
        .collect();
    let centres: BTreeSet<&Finess> = episodes.iter().map(|e| &e.record.centre_finess).collect();
    let filieres: BTreeSet<&Filiere> = filiere_of.values().copied().collect();
    assert!(centres.len() >= 4 && filieres.len() == 2, "{centres:?} {filieres:?}");

    // Scopes: each centre alone, each filière alone, and a partner with one centre of one
    // filière and the other filière.
    let mut scopes: Vec<Scope> = Vec::new();
    for c in &centres {
        scopes.push(Scope::new(Role::Prescriber, vec![(*c).clone()], vec![]).expect("scope"));
    }
    for f in &filieres {
        scopes.push(Scope::new(Role::DataManager, vec![], vec![(*f).clone()]).expect("scope"));
    }
    let first = episodes.first().expect("episodes");
    let other = filieres
        .iter()
        .find(|f| ***f != *filiere_of[first.record.cohort_id.as_str()])
        .expect("other filière");
    scopes.push(
        Scope::new(
            Role::Partner,
            vec![first.record.centre_finess.clone()],
            vec![(*other).clone()],
        )
        .expect("scope"),
    );

    for scope in &scopes {
        let expected: BTreeSet<&str> = reach_of_episode
            .iter()
            .filter(|(_, r)| scope.covers(r))
            .map(|(id, _)| *id)
            .collect();
        assert!(!expected.is_empty() && expected.len() < episodes.len(), "{scope:?}");
        let mut got = BTreeSet::new();
        let mut page = PageRequest { size: 37, token: None };
        loop {
            let p = store
                .list_episodes(&EpisodeFilter::default(), Some(scope), &page)
                .await
                .expect("list");
            got.extend(p.items.iter().map(|e| e.meta.id.clone()));
            match p.next_page_token {
                Some(t) => page.token = Some(t),
                None => break,
            }
        }
        let got: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        assert_eq!(got, expected, "{scope:?}");

        let expected: BTreeSet<&str> = cohorts
            .iter()
            .filter(|c| scope.reads_cohorts_of(&c.record.filiere))
            .map(|c| c.meta.id.as_str())
            .collect();
        let page = PageRequest { size: 500, token: None };
        let listed = store
            .list_cohorts(&CohortFilter::default(), Some(scope), &page)
            .await
            .expect("cohorts");
        let got: BTreeSet<&str> = listed.items.iter().map(|c| c.meta.id.as_str()).collect();
        assert_eq!(got, expected, "{scope:?}");
    }

    // Every record reaches where its episode is; a patient, where all its episodes are.
    let mut patients: BTreeMap<&str, Reach> = BTreeMap::new();
    for e in &episodes {
        patients
            .entry(e.record.patient_id.as_str())
            .or_default()
            .extend(reach_of_episode[e.meta.id.as_str()].clone());
        let got = store.reach(RecordKind::Episode, &e.meta.id).await.expect("reach");
        assert_eq!(got, reach_of_episode[e.meta.id.as_str()]);
    }
    for (id, reach) in &patients {
        assert_eq!(
            &store.reach(RecordKind::Patient, id).await.expect("reach"),
            reach,
            "patient {id}"
        );
    }
    async fn hanging<T: Stored>(
        store: &Store,
        episode_of: impl Fn(&T) -> String,
        reach_of: &BTreeMap<&str, Reach>,
    ) -> usize {
        let records = all::<T>(store).await;
        for r in &records {
            let got = store.reach(T::KIND, &r.meta.id).await.expect("reach");
            assert_eq!(
                got,
                reach_of[episode_of(&r.record).as_str()],
                "{:?} {}",
                T::KIND,
                r.meta.id
            );
        }
        records.len()
    }
    assert!(hanging::<Authorisation>(&store, |a| a.episode_id.to_string(), &reach_of_episode).await > 0);
    assert!(hanging::<FollowUp>(&store, |f| f.episode_id.to_string(), &reach_of_episode).await > 0);
    assert!(hanging::<AdverseEvent>(&store, |a| a.episode_id.to_string(), &reach_of_episode).await > 0);
    for c in &cohorts {
        let got = store.reach(RecordKind::Cohort, &c.meta.id).await.expect("reach");
        assert_eq!(got, Reach::filiere(c.record.filiere.clone()));
    }
    // What does not exist belongs nowhere.
    for kind in [
        RecordKind::Patient,
        RecordKind::Episode,
        RecordKind::FollowUp,
        RecordKind::Cohort,
    ] {
        let got = store
            .reach(kind, "01939a2c-0000-7000-8000-000000000000")
            .await
            .expect("reach");
        assert_eq!(got, Reach::default());
    }
    store.close().await;
}
