//! Fuzzing on the stable toolchain: a mutation fuzzer drives decode -> validate -> convert ->
//! store of the real server with the bytes of mutated requests, for a bounded time.
//!
//! The seeds are valid requests of every unary method (reference, registry, reports, audit),
//! naming records that exist, so that mutations reach past decoding into validation, the access
//! checks, the lifecycles and the store. Each input is one to four stacked mutations of a seed:
//! bit flips, boundary bytes, cuts, insertions, duplicated or spliced spans, and, aware of the
//! wire format, a field's value replaced by hostile text, dates or numbers, or a field of
//! another seed or an unknown one added. Inputs that bring an answer not seen before for their
//! method (a code and the first field it names) join the pool, a cheap stand-in for coverage.
//!
//! Asserted: every call is answered within 10 s with a code a caller can act on (never
//! INTERNAL, UNKNOWN, UNAVAILABLE, DATA_LOSS or UNIMPLEMENTED); a refused write changes no row;
//! afterwards the audit chain is intact, every stored version has its audit event, and health
//! is SERVING. `OBSERVATORY_FUZZ_SECONDS` sets the time per backend (5 by default; `.ci/run`
//! sets more) and `OBSERVATORY_FUZZ_SEED` replays a run: the seed is printed on failure.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use observatory_domain::access::Role;
use observatory_proto::v1 as pb;
use prost::Message;

use crate::helpers::{Backend, start_app, token_for};
use crate::hostile::Raw;
use crate::on_both_backends;

on_both_backends!(mutated_requests_never_break_the_server);

/// xorshift64*: small, fast, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values a mutation may put in a length-delimited field.
const TEXT: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "\u{0}",
    "\u{202e}",
    "\u{200b}",
    "é",
    "'; DROP TABLE records; --",
    "%s%n",
    "-5000-01-01",
    "+275760-09-13",
    "2026-02-29",
    "2024-02-29",
    "9999-12-31",
    "0001-01-01",
    "2026-01",
    "2026-13",
    "01939a2c-0000-7000-8000-000000000000",
    "00000000-0000-0000-0000-000000000000",
    "98878",
    "D66",
    "B02BX07",
    "10019211",
    "750100125",
    "10000000017",
    "MHEMO",
    "FILNEMUS",
    "11",
    "976",
];

/// Values a mutation may put in a varint field.
const NUMBERS: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    9,
    10,
    99,
    127,
    128,
    255,
    65_535,
    i32::MAX as u64,
    i32::MIN as i64 as u64,
    u32::MAX as u64,
    i64::MAX as u64,
    u64::MAX,
];

/// One top-level field of an encoded message: where it starts and ends, its number and wire type.
#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    /// Where the value starts (after the tag and, for length-delimited fields, the length).
    value: usize,
    number: u32,
    wire: u8,
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The top-level fields of `bytes`, as far as they parse.
fn fields(bytes: &[u8]) -> Vec<Field> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let Some(tag) = varint(bytes, &mut at) else { break };
        let (number, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
        let value = match wire {
            0 => {
                let v = at;
                if varint(bytes, &mut at).is_none() {
                    break;
                }
                v
            }
            1 => {
                at += 8;
                at - 8
            }
            2 => {
                let Some(len) = varint(bytes, &mut at) else { break };
                let v = at;
                at = at.saturating_add(len as usize);
                v
            }
            5 => {
                at += 4;
                at - 4
            }
            _ => break,
        };
        if at > bytes.len() {
            break;
        }
        out.push(Field {
            start,
            end: at,
            value,
            number,
            wire,
        });
    }
    out
}

fn key(number: u32, wire: u8) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(number) << 3 | u64::from(wire), &mut out);
    out
}

/// One mutation of `input`; `other` is another seed, for splices.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(11) {
        // A bit flipped.
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        // A byte set to a boundary value.
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = *rng.pick(&[0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x12]);
        }
        // A span cut out.
        2 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            input.drain(at..at + n);
        }
        // Cut short.
        3 if len > 0 => input.truncate(rng.below(len)),
        // Random bytes inserted.
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            input.splice(at..at, bytes);
        }
        // A span repeated.
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(32));
            let span = input[at..at + n].to_vec();
            input.splice(at..at, span);
        }
        // A field of another seed added (it may not belong to this message at all).
        6 => {
            let theirs = fields(other);
            if !theirs.is_empty() {
                let f = *rng.pick(&theirs);
                input.extend_from_slice(&other[f.start..f.end]);
            }
        }
        // A field's value replaced by hostile text (length-delimited) or a number (varint).
        7 | 8 => {
            let ours = fields(input);
            if ours.is_empty() {
                return;
            }
            let f = *rng.pick(&ours);
            let mut replacement = key(f.number, f.wire);
            match f.wire {
                0 => prost::encoding::encode_varint(*rng.pick(NUMBERS), &mut replacement),
                2 => {
                    let text = rng.pick(TEXT).as_bytes().to_vec();
                    let text = if rng.below(8) == 0 { text.repeat(200) } else { text };
                    prost::encoding::encode_varint(text.len() as u64, &mut replacement);
                    replacement.extend_from_slice(&text);
                }
                _ => return,
            }
            input.splice(f.start..f.end, replacement);
        }
        // A nested message mutated in place, its length kept right.
        9 => {
            let ours = fields(input);
            let nested: Vec<Field> = ours.into_iter().filter(|f| f.wire == 2 && f.end > f.value).collect();
            if nested.is_empty() {
                return;
            }
            let f = *rng.pick(&nested);
            let mut inner = input[f.value..f.end].to_vec();
            mutate(rng, &mut inner, other);
            let mut replacement = key(f.number, 2);
            prost::encoding::encode_varint(inner.len() as u64, &mut replacement);
            replacement.extend_from_slice(&inner);
            input.splice(f.start..f.end, replacement);
        }
        // An unknown field, or a known number with the wrong wire type.
        _ => {
            let number = if rng.below(2) == 0 {
                1 + rng.below(12) as u32
            } else {
                1000 + rng.below(1000) as u32
            };
            let wire = *rng.pick(&[0u8, 1, 2, 5]);
            input.extend(key(number, wire));
            match wire {
                0 => prost::encoding::encode_varint(*rng.pick(NUMBERS), input),
                1 => input.extend_from_slice(&rng.next().to_le_bytes()),
                5 => input.extend_from_slice(&(rng.next() as u32).to_le_bytes()),
                _ => {
                    let text = rng.pick(TEXT).as_bytes();
                    prost::encoding::encode_varint(text.len() as u64, input);
                    input.extend_from_slice(text);
                }
            }
        }
    }
}

/// A seed: a method, a valid request of it.
struct Seed {
    method: String,
    body: Vec<u8>,
}

fn seed(service: &str, method: &str, message: &impl Message) -> Seed {
    Seed {
        method: format!("/observatory.v1.{service}/{method}"),
        body: message.encode_to_vec(),
    }
}

/// Valid requests of every unary method but `RunReport` (each run starts an analytics job, and
/// runs per token are bounded: mutations would only meet RESOURCE_EXHAUSTED), on the records of
/// `ids`.
fn seeds(ids: &Ids) -> Vec<Seed> {
    use pb::{
        transition_authorisation_request as ta, transition_episode_request as te, transition_framework_request as tf,
    };
    let page = Some(pb::PageRequest {
        page_size: 10,
        page_token: String::new(),
    });
    let get = |id: &str| pb::GetRequest { id: id.into() };
    let diagnosis = pb::Diagnosis {
        orpha_code: "98878".into(),
        icd10: "D66".into(),
        status: pb::DiagnosisStatus::Confirmed as i32,
        diagnosis_date: "2010-09-01".into(),
        factor_level_class: 0,
        inhibitor_status: 0,
    };
    vec![
        seed(
            "ReferenceService",
            "CreateCentre",
            &pb::CreateCentreRequest {
                idempotency_key: "fuzz-centre".into(),
                finess: "130000011".into(),
                name: "CRC Marseille".into(),
                r#type: pb::CentreType::Ccmr as i32,
                region_code: "93".into(),
                filieres: vec!["MHEMO".into()],
            },
        ),
        seed(
            "ReferenceService",
            "GetCentre",
            &pb::GetCentreRequest {
                finess: ids.finess.clone(),
            },
        ),
        seed(
            "ReferenceService",
            "ListCentres",
            &pb::ListCentresRequest {
                page: page.clone(),
                region_code: "11".into(),
                filiere: "MHEMO".into(),
            },
        ),
        seed(
            "ReferenceService",
            "CreatePrescriber",
            &pb::CreatePrescriberRequest {
                idempotency_key: "fuzz-prescriber".into(),
                rpps: crate::helpers::rpps(77),
                specialty: "neurology".into(),
                centre_finess: ids.finess.clone(),
            },
        ),
        seed(
            "ReferenceService",
            "UpdateCentre",
            &pb::UpdateCentreRequest {
                finess: ids.finess.clone(),
                expected_version: 1,
                reason: "renamed".into(),
                name: Some("CRMR, site coordonnateur".into()),
                r#type: Some(pb::CentreType::CrmrCoordinating as i32),
                region_code: Some("11".into()),
                filieres: Some(pb::FiliereList {
                    filieres: vec!["MHEMO".into(), "FILNEMUS".into()],
                }),
            },
        ),
        seed(
            "ReferenceService",
            "UpdatePrescriber",
            &pb::UpdatePrescriberRequest {
                rpps: ids.rpps.clone(),
                expected_version: 1,
                reason: "moved".into(),
                specialty: Some("paediatric haematology".into()),
                centre_finess: Some(ids.finess.clone()),
            },
        ),
        seed(
            "ReferenceService",
            "GetPrescriber",
            &pb::GetPrescriberRequest { rpps: ids.rpps.clone() },
        ),
        seed(
            "ReferenceService",
            "ListPrescribers",
            &pb::ListPrescribersRequest {
                page: page.clone(),
                centre_finess: ids.finess.clone(),
            },
        ),
        seed(
            "ReferenceService",
            "ListDrugs",
            &pb::ListDrugsRequest {
                atc_prefix: "B02".into(),
                ..Default::default()
            },
        ),
        seed(
            "ReferenceService",
            "ListDiseases",
            &pb::ListDiseasesRequest {
                filiere: "MHEMO".into(),
                ..Default::default()
            },
        ),
        seed(
            "ReferenceService",
            "CreateFramework",
            &pb::CreateFrameworkRequest {
                idempotency_key: "fuzz-framework".into(),
                pathway: pb::Pathway::AapPost as i32,
                drug_atc: "B02BX07".into(),
                indication: "Haemophilia A or B with inhibitors".into(),
                orpha_codes: vec!["98878".into()],
                authority: "HAS".into(),
                decision_reference: "HAS-2026-01".into(),
                valid_from: "2026-01-01".into(),
                valid_to: "2027-01-01".into(),
                status: pb::FrameworkStatus::Granted as i32,
                protocol_type: pb::ProtocolType::PutRd as i32,
                protocol_version: "1.0".into(),
                follow_up_months: 6,
                source: "https://has-sante.fr/decision".into(),
                confirmed: true,
                requires_national_rcp: false,
                synthesis_months: 6,
            },
        ),
        seed(
            "ReferenceService",
            "GetFramework",
            &pb::GetFrameworkRequest {
                id: ids.framework.clone(),
            },
        ),
        seed(
            "ReferenceService",
            "TransitionFramework",
            &pb::TransitionFrameworkRequest {
                id: ids.framework.clone(),
                expected_version: 1,
                transition: Some(tf::Transition::Suspend(tf::DatedStep {
                    date: "2026-06-01".into(),
                })),
            },
        ),
        seed(
            "ReferenceService",
            "ListFrameworks",
            &pb::ListFrameworksRequest {
                pathway: pb::Pathway::AapPost as i32,
                drug_atc: "B02BX07".into(),
            },
        ),
        seed(
            "RegistryService",
            "CreateCohort",
            &pb::CreateCohortRequest {
                idempotency_key: "fuzz-cohort".into(),
                name: "Emicizumab off-label".into(),
                filiere: "MHEMO".into(),
                pathway: pb::Pathway::OffLabel as i32,
                drug_atc: "B02BX06".into(),
                orpha_codes: vec!["98878".into()],
                framework_id: String::new(),
                follow_up_months: 6,
            },
        ),
        seed("RegistryService", "GetCohort", &get(&ids.cohort)),
        seed(
            "RegistryService",
            "ListCohorts",
            &pb::ListCohortsRequest {
                page: page.clone(),
                pathway: pb::Pathway::Aac as i32,
                drug_atc: "B02BX07".into(),
                filiere: "MHEMO".into(),
            },
        ),
        seed(
            "RegistryService",
            "TransitionCohort",
            &pb::TransitionCohortRequest {
                id: ids.cohort.clone(),
                expected_version: 1,
                transition: pb::CohortTransition::Close as i32,
            },
        ),
        seed(
            "RegistryService",
            "RegisterPatient",
            &pb::RegisterPatientRequest {
                idempotency_key: "fuzz-patient".into(),
                subject: Some(pb::register_patient_request::Subject::Idmr(
                    "55555555555555555555".into(),
                )),
                sex: pb::Sex::Female as i32,
                birth_year_month: "2015-03".into(),
                region_code: "84".into(),
                objects_to_reuse: false,
                diagnoses: vec![diagnosis.clone()],
                cde: None,
            },
        ),
        seed("RegistryService", "GetPatient", &get(&ids.patient)),
        seed(
            "RegistryService",
            "ListPatients",
            &pb::ListPatientsRequest {
                page: page.clone(),
                pseudonym: format!("{:020}", 1_001),
                cohort_id: ids.cohort.clone(),
                pathway: pb::Pathway::Aac as i32,
                status: pb::EpisodeStatus::Ongoing as i32,
            },
        ),
        seed(
            "RegistryService",
            "MergePatients",
            &pb::MergePatientsRequest {
                kept_id: ids.patient.clone(),
                kept_version: 1,
                merged_id: ids.episode.clone(),
                merged_version: 1,
                reason: "same person".into(),
            },
        ),
        seed(
            "RegistryService",
            "RequestRcpReview",
            &pb::RequestRcpReviewRequest {
                patient_id: ids.patient.clone(),
                expected_version: 1,
                level: pb::RcpLevel::National as i32,
                filiere: "MHEMO".into(),
                centre_finess: ids.finess.clone(),
                drug_atc: "B02BX07".into(),
                indication_orpha_code: "98878".into(),
                requested_date: "2026-03-01".into(),
            },
        ),
        seed(
            "RegistryService",
            "RecordRcpOpinion",
            &pb::RecordRcpOpinionRequest {
                patient_id: ids.patient.clone(),
                expected_version: 2,
                review_id: ids.patient.clone(),
                meeting_date: "2026-03-08".into(),
                opinion: pb::RcpOpinion::FavourableWithConditions as i32,
                conditions: "factor VIII trough monitoring".into(),
            },
        ),
        seed(
            "RegistryService",
            "UpdatePatient",
            &pb::UpdatePatientRequest {
                id: ids.patient.clone(),
                expected_version: 1,
                reason: "moved".into(),
                region_code: Some("84".into()),
                vital_status: pb::VitalStatus::Alive as i32,
                objects_to_reuse: Some(false),
                diagnoses: Some(pb::DiagnosisList {
                    diagnoses: vec![diagnosis],
                }),
                cde: None,
                sex: 0,
                birth_year_month: None,
            },
        ),
        seed("RegistryService", "DeclareEpisode", &ids.declaration),
        seed("RegistryService", "GetEpisode", &get(&ids.episode)),
        seed(
            "RegistryService",
            "ListEpisodes",
            &pb::ListEpisodesRequest {
                page: page.clone(),
                cohort_id: ids.cohort.clone(),
                centre_finess: ids.finess.clone(),
                pathway: pb::Pathway::Aac as i32,
                drug_atc: "B02BX07".into(),
                orpha_code: "98878".into(),
                status: pb::EpisodeStatus::Declared as i32,
                request_date: Some(pb::DateRange {
                    from: "2026-01-01".into(),
                    to: "2026-12-31".into(),
                }),
                patient_id: ids.patient.clone(),
            },
        ),
        seed(
            "RegistryService",
            "TransitionEpisode",
            &pb::TransitionEpisodeRequest {
                id: ids.episode.clone(),
                expected_version: ids.episode_version,
                transition: Some(te::Transition::Stop(te::Stop {
                    date: "2026-06-01".into(),
                    reason: pb::StopReason::Inefficacy as i32,
                })),
            },
        ),
        seed("RegistryService", "GetAuthorisation", &get(&ids.authorisation)),
        seed(
            "RegistryService",
            "TransitionAuthorisation",
            &pb::TransitionAuthorisationRequest {
                id: ids.authorisation.clone(),
                expected_version: 1,
                transition: Some(ta::Transition::Grant(ta::Grant {
                    decision_date: "2026-01-20".into(),
                    valid_from: "2026-01-20".into(),
                    valid_to: "2026-07-20".into(),
                    reference: "ANSM-AAC-2026-0001".into(),
                })),
            },
        ),
        seed(
            "RegistryService",
            "RecordFollowUp",
            &pb::RecordFollowUpRequest {
                idempotency_key: "fuzz-follow-up".into(),
                episode_id: ids.episode.clone(),
                visit_date: "2026-03-01".into(),
                efficacy: pb::EfficacyAssessment::Improved as i32,
                measures: vec![pb::Measure {
                    code: "ABR".into(),
                    value: 1.0,
                }],
                weight_kg: 40.0,
                adherence: 1,
            },
        ),
        seed(
            "RegistryService",
            "RecordAdverseEvent",
            &pb::RecordAdverseEventRequest {
                idempotency_key: "fuzz-adverse-event".into(),
                episode_id: ids.episode.clone(),
                onset_date: "2026-03-01".into(),
                meddra_pt_code: "10019211".into(),
                serious: true,
                outcome: 1,
                causality: 1,
                case_details: Some(pb::CaseDetails {
                    seriousness: vec![pb::SeriousnessCriterion::Hospitalisation as i32],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        seed("RegistryService", "GetFollowUp", &get(&ids.follow_up)),
        seed(
            "RegistryService",
            "ListFollowUps",
            &pb::ListByEpisodeRequest {
                episode_id: ids.episode.clone(),
                page: page.clone(),
            },
        ),
        seed(
            "RegistryService",
            "ListAdverseEvents",
            &pb::ListByEpisodeRequest {
                episode_id: ids.episode.clone(),
                page: page.clone(),
            },
        ),
        seed("RegistryService", "GetAdverseEvent", &get(&ids.adverse_event)),
        seed(
            "RegistryService",
            "ExportAdverseEvents",
            &pb::ExportAdverseEventsRequest {
                selection: Some(pb::export_adverse_events_request::Selection::AdverseEventId(
                    ids.adverse_event.clone(),
                )),
                format: pb::CaseFormat::E2bXml as i32,
                language: "en".into(),
                page: None,
            },
        ),
        seed(
            "RegistryService",
            "ExportAdverseEvents",
            &pb::ExportAdverseEventsRequest {
                selection: Some(pb::export_adverse_events_request::Selection::Period(pb::CasePeriod {
                    from: "2026-01-01".into(),
                    to: "2026-12-31".into(),
                    serious_only: true,
                })),
                format: pb::CaseFormat::Html as i32,
                language: "fr".into(),
                page: page.clone(),
            },
        ),
        seed(
            "RegistryService",
            "UpdateAdverseEvent",
            &pb::UpdateAdverseEventRequest {
                id: ids.adverse_event.clone(),
                expected_version: 1,
                reason: "declared".into(),
                serious: Some(true),
                outcome: 2,
                causality: 2,
                pv_declaration_date: "2026-03-05".into(),
                pv_reference: "CRPV-2026-1".into(),
                pv_receiver: Some("CRPV de Lyon".into()),
                case_details: None,
            },
        ),
        seed(
            "RegistryService",
            "GetWorklist",
            &pb::GetWorklistRequest { within_days: 60 },
        ),
        seed(
            "RegistryService",
            "GetHistory",
            &pb::GetHistoryRequest {
                kind: pb::RecordKind::Episode as i32,
                id: ids.episode.clone(),
            },
        ),
        seed(
            "ReportService",
            "GetReportRun",
            &pb::GetReportRunRequest {
                run_id: "01939a2c-0000-7000-8000-000000000000".into(),
            },
        ),
        seed(
            "ReportService",
            "ListReportRuns",
            &pb::ListReportRunsRequest { page: page.clone() },
        ),
        seed(
            "AuditService",
            "ExportAudit",
            &pb::ExportAuditRequest {
                from: Some(prost_types::Timestamp {
                    seconds: 1_767_225_600,
                    nanos: 0,
                }),
                to: None,
                page,
            },
        ),
        seed(
            "AuditService",
            "VerifyAudit",
            &pb::VerifyAuditRequest { anchor: String::new() },
        ),
    ]
}

/// The records the seeds name.
struct Ids {
    finess: String,
    rpps: String,
    framework: String,
    cohort: String,
    patient: String,
    episode: String,
    authorisation: String,
    follow_up: String,
    adverse_event: String,
    declaration: pb::DeclareEpisodeRequest,
    /// The version of the (ongoing) episode.
    episode_version: i64,
}

fn is_read(method: &str) -> bool {
    let name = method.rsplit('/').next().unwrap_or_default();
    ["Get", "List", "Export", "Verify"].iter().any(|p| name.starts_with(p))
}

async fn mutated_requests_never_break_the_server(backend: Backend) {
    let seconds: u64 = std::env::var("OBSERVATORY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed_value: u64 = std::env::var("OBSERVATORY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        | 1;
    let (url, dir) = crate::helpers::fresh_database(backend).await;
    let mut app = start_app(
        url,
        dir,
        &[
            ("OBSERVATORY_RATE_LIMIT_PER_SECOND", "1000000"),
            ("OBSERVATORY_RATE_LIMIT_BURST", "1000000"),
        ],
    )
    .await;

    // Records for the seeds to name.
    let (finess, rpps) = app.centre_and_prescriber().await;
    let cohort = app.aac_cohort().await.meta.expect("meta").id;
    let patient = app.patient(1).await.meta.expect("meta").id;
    let declaration = app.aac_declaration(&patient, &cohort, &rpps, "fuzz-episode");
    let declared = app
        .registry
        .declare_episode(declaration.clone())
        .await
        .expect("declare")
        .into_inner();
    let episode = declared.episode.expect("episode").meta.expect("meta");
    let granted = declared.authorisation.expect("authorisation").meta.expect("meta");
    app.registry
        .transition_authorisation(pb::TransitionAuthorisationRequest {
            id: granted.id.clone(),
            expected_version: granted.version,
            transition: Some(pb::transition_authorisation_request::Transition::Grant(
                pb::transition_authorisation_request::Grant {
                    decision_date: "2026-01-20".into(),
                    valid_from: "2026-01-20".into(),
                    valid_to: "2026-07-20".into(),
                    reference: "ANSM-AAC-2026-0001".into(),
                },
            )),
        })
        .await
        .expect("grant");
    let initiated = app
        .registry
        .transition_episode(pb::TransitionEpisodeRequest {
            id: episode.id.clone(),
            expected_version: episode.version,
            transition: Some(pb::transition_episode_request::Transition::Initiate(
                pb::transition_episode_request::Initiate {
                    first_administration_date: "2026-02-01".into(),
                    dosage: None,
                },
            )),
        })
        .await
        .expect("initiate")
        .into_inner()
        .meta
        .expect("meta");
    let episode = episode.id;
    // A second patient's episode, its authorisation still pending, for the grant seed.
    let second = app.patient(3).await.meta.expect("meta").id;
    let authorisation = app
        .registry
        .declare_episode(app.aac_declaration(&second, &cohort, &rpps, "fuzz-episode-2"))
        .await
        .expect("declare")
        .into_inner()
        .authorisation
        .expect("authorisation")
        .meta
        .expect("meta")
        .id;
    let follow_up = app
        .registry
        .record_follow_up(pb::RecordFollowUpRequest {
            idempotency_key: "fuzz-setup-follow-up".into(),
            episode_id: episode.clone(),
            visit_date: "2026-02-15".into(),
            efficacy: pb::EfficacyAssessment::Stable as i32,
            measures: Vec::new(),
            weight_kg: 41.0,
            adherence: 1,
        })
        .await
        .expect("follow-up")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let adverse_event = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "fuzz-setup-adverse-event".into(),
            episode_id: episode.clone(),
            onset_date: "2026-02-10".into(),
            meddra_pt_code: "10019211".into(),
            serious: false,
            outcome: 1,
            causality: 1,
            ..Default::default()
        })
        .await
        .expect("adverse event")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let framework = app
        .reference
        .create_framework(pb::CreateFrameworkRequest {
            idempotency_key: "fuzz-setup-framework".into(),
            pathway: pb::Pathway::Cpc as i32,
            drug_atc: "B02BX07".into(),
            indication: "Haemophilia with inhibitors".into(),
            orpha_codes: vec!["98878".into()],
            authority: "ANSM".into(),
            decision_reference: "ANSM-CPC-2026-01".into(),
            valid_from: "2026-01-01".into(),
            valid_to: "2028-12-31".into(),
            status: pb::FrameworkStatus::Granted as i32,
            protocol_type: pb::ProtocolType::PutSp as i32,
            protocol_version: "1.0".into(),
            follow_up_months: 6,
            source: "https://ansm.sante.fr/cpc".into(),
            confirmed: true,
            requires_national_rcp: false,
            synthesis_months: 6,
        })
        .await
        .expect("framework")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let ids = Ids {
        finess,
        rpps,
        framework,
        cohort,
        patient,
        episode,
        authorisation,
        follow_up,
        adverse_event,
        declaration,
        episode_version: initiated.version,
    };
    let seeds = seeds(&ids);

    // A token of every role a method allows.
    let mut tokens: BTreeMap<Role, String> = BTreeMap::new();
    for role in [
        Role::Prescriber,
        Role::DataManager,
        Role::Analyst,
        Role::Partner,
        Role::Admin,
    ] {
        tokens.insert(role, token_for(&app.store, role).await);
    }
    let roles_of = |method: &str| -> Vec<Role> {
        observatory_grpc::access::roles_for(method)
            .unwrap_or_else(|| panic!("{method} has no access rule"))
            .iter()
            .copied()
            .filter(|r| tokens.contains_key(r))
            .collect()
    };

    let mut rng = Rng(seed_value);
    let mut pool: Vec<(usize, Vec<u8>)> = seeds.iter().enumerate().map(|(i, s)| (i, s.body.clone())).collect();
    let mut seen: HashSet<(String, i32, String)> = HashSet::new();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        runs += 1;
        let (seed_index, base) = pool[rng.below(pool.len())].clone();
        let method = seeds[seed_index].method.as_str();
        let mut input = base;
        let other = &seeds[rng.below(seeds.len())].body;
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input, other);
        }
        let roles = roles_of(method);
        let role = *rng.pick(&roles);
        let before = if is_read(method) {
            None
        } else {
            Some(app.row_count().await)
        };

        let mut request = tonic::Request::new(input.clone());
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", tokens[&role]).parse().expect("metadata"),
        );
        let path = http::uri::PathAndQuery::try_from(method).expect("path");
        let replay = format!("replay with OBSERVATORY_FUZZ_SEED={seed_value}");
        grpc.ready().await.expect("ready");
        let answer = tokio::time::timeout(Duration::from_secs(10), grpc.unary(request, path, Raw))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{method} as {role}: no answer within 10 s to {}; {replay}",
                    hex::encode(&input)
                )
            });
        let (code, field) = match &answer {
            Ok(_) => (tonic::Code::Ok, String::new()),
            Err(status) if status.code() == tonic::Code::InvalidArgument => (
                status.code(),
                crate::helpers::violated_fields(status)
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
            ),
            Err(status) => (status.code(), String::new()),
        };
        assert!(
            !matches!(
                code,
                tonic::Code::Internal
                    | tonic::Code::Unknown
                    | tonic::Code::Unavailable
                    | tonic::Code::DataLoss
                    | tonic::Code::Unimplemented
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
            ),
            "{method} as {role}: {answer:?} to {}; {replay}",
            hex::encode(&input)
        );
        if let (Some(before), false) = (before, code == tonic::Code::Ok) {
            assert_eq!(
                app.row_count().await,
                before,
                "{method} as {role} was refused ({code:?}) but stored something: {}; {replay}",
                hex::encode(&input)
            );
        }
        *codes.entry(format!("{code:?}")).or_default() += 1;
        if seen.insert((method.to_owned(), code as i32, field)) {
            pool.push((seed_index, input));
        }
    }
    eprintln!(
        "fuzz ({backend:?}, seed {seed_value}): {runs} inputs in {seconds} s, {} answers of distinct kinds kept; {codes:?}",
        seen.len()
    );
    assert!(runs > 0);
    assert!(
        codes.get("Ok").copied().unwrap_or(0) > 0 && codes.get("InvalidArgument").copied().unwrap_or(0) > 0,
        "the mutations reached neither accepted nor refused requests: {codes:?}"
    );

    // The server is whole: its trail intact, every version with its event, still serving.
    let verified = app
        .audit
        .verify_audit(pb::VerifyAuditRequest { anchor: String::new() })
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.intact, "{verified:?}; seed {seed_value}");
    assert_eq!(verified.versions_without_event, 0, "{verified:?}; seed {seed_value}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    app.patient(2).await;
}
