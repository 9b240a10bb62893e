//! Reference releases: official files imported at run time, recorded append-only, the shipped
//! lists as the first release; a release that drops codes in use leaves every stored record
//! readable and refuses the dropped codes in new input only.

use observatory_domain::reference_files::{self as files, InputFile};
use observatory_proto::v1 as pb;
use tonic::Code;

use crate::helpers::{Backend, app_of, fresh_database, start_app, token_for, violated_fields};
use crate::on_both_backends;

on_both_backends!(a_release_that_drops_codes_in_use_leaves_history_readable);

const ORPHADATA: &str = include_str!("../fixtures/reference/orphadata/en_product1.xml");
const ATC: &[u8] = include_bytes!("../fixtures/reference/atc/atc.csv");

/// The fixture without the disorder of `orpha_code`.
fn orphadata_without(orpha_code: &str) -> String {
    let needle = format!("<OrphaCode>{orpha_code}</OrphaCode>");
    let at = ORPHADATA.find(&needle).expect("code in fixture");
    let start = ORPHADATA[..at].rfind("    <Disorder ").expect("disorder start");
    let end = at + ORPHADATA[at..].find("</Disorder>\n").expect("disorder end") + "</Disorder>\n".len();
    format!("{}{}", &ORPHADATA[..start], &ORPHADATA[end..])
}

fn reason_of(status: &tonic::Status, field: &str) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.into_iter().find(|v| v.field == field))
        .map(|v| v.reason)
        .unwrap_or_else(|| panic!("no violation of {field}: {status:?}"))
}

async fn a_release_that_drops_codes_in_use_leaves_history_readable(backend: Backend) {
    let (url, dir) = fresh_database(backend).await;
    let mut app = start_app(url, dir, &[("OBSERVATORY_CATALOGUE_REFRESH_SECONDS", "1")]).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    // A cohort of concizumab (B02BX07) for haemophilia A and B, a patient with haemophilia A
    // (98878) and an episode for it.
    let cohort = app.aac_cohort().await.meta.expect("meta").id;
    let patient = app.patient(1).await.meta.expect("meta").id;
    let declared = app
        .registry
        .declare_episode(app.aac_declaration(&patient, &cohort, &rpps, "episode-1"))
        .await
        .expect("declare")
        .into_inner();
    let episode_id = declared.episode.and_then(|e| e.meta).expect("episode").id;

    // The shipped lists are the first release.
    let releases = app
        .reference
        .list_reference_releases(pb::ListReferenceReleasesRequest {})
        .await
        .expect("releases")
        .into_inner()
        .releases;
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].source, "SHIPPED");
    assert_eq!(releases[0].in_force_for, ["DISEASE", "DRUG"]);

    // Another process (the command line on the same database) imports a nomenclature that
    // lacks haemophilia A, and an ATC list that lacks concizumab.
    let local = app_of(&app.store).await;
    let call = |op| observatory_app::Call::local("command-line", op, uuid::Uuid::now_v7().to_string());
    let orphadata = orphadata_without("98878");
    let content = files::orphadata::parse(InputFile {
        name: "en_product1.xml",
        bytes: orphadata.as_bytes(),
    })
    .expect("parses");
    let imported = observatory_app::reference::import_release(&local, &call("ImportReferenceRelease"), content.clone())
        .await
        .expect("import");
    assert!(imported.new);
    assert_eq!(
        imported.release.counts["DISEASE_RETIRED"], 2,
        "98878 dropped, 9999991 inactive"
    );
    let atc = files::atc::parse(
        InputFile {
            name: "atc.csv",
            bytes: ATC,
        },
        "WHO ATC/DDD Index",
        "2026",
        None,
    )
    .expect("parses")
    .content;
    observatory_app::reference::import_release(&local, &call("ImportReferenceRelease"), atc)
        .await
        .expect("import atc");
    // The same files again: the release already recorded, nothing written.
    let again = observatory_app::reference::import_release(&local, &call("ImportReferenceRelease"), content)
        .await
        .expect("re-import");
    assert!(!again.new);
    assert_eq!(again.release.seq, imported.release.seq);

    // The server picks the new releases up within its refresh period.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let listed = app
            .reference
            .list_diseases(pb::ListDiseasesRequest {
                filiere: String::new(),
                page: None,
                include_retired: false,
            })
            .await
            .expect("diseases")
            .into_inner();
        if listed.diseases.iter().all(|d| d.orpha_code != "98878") {
            assert!(
                listed.diseases.iter().any(|d| d.orpha_code == "83330"),
                "a new code is listed"
            );
            assert!(
                listed.diseases[0].source.starts_with("ORPHADATA"),
                "{:?}",
                listed.diseases[0]
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never saw the new release"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let releases = app
        .reference
        .list_reference_releases(pb::ListReferenceReleasesRequest {})
        .await
        .expect("releases")
        .into_inner()
        .releases;
    let sources: Vec<(&str, Vec<String>)> = releases
        .iter()
        .map(|r| (r.source.as_str(), r.in_force_for.clone()))
        .collect();
    assert_eq!(
        sources,
        [
            ("SHIPPED", vec![]),
            ("ORPHADATA", vec!["DISEASE".to_owned()]),
            ("ATC", vec!["DRUG".to_owned()]),
        ]
    );
    assert_eq!(releases[1].files[0].name, "en_product1.xml");
    assert_eq!(releases[1].release_date, "2025-07-01");
    let secret = token_for(&app.store, observatory_domain::access::Role::Prescriber).await;
    let denied = app
        .reference_as(&secret)
        .list_reference_releases(pb::ListReferenceReleasesRequest {})
        .await
        .expect_err("a prescriber does not list releases");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Retired codes stay known, shown as retired, with their last name.
    let all = app
        .reference
        .list_diseases(pb::ListDiseasesRequest {
            filiere: "MHEMO".into(),
            page: None,
            include_retired: true,
        })
        .await
        .expect("diseases")
        .into_inner()
        .diseases;
    let a = all
        .iter()
        .find(|d| d.orpha_code == "98878")
        .expect("retired code listed when asked");
    assert!(a.retired);
    assert_eq!(a.name, "Haemophilia A");
    let b = all.iter().find(|d| d.orpha_code == "98879").expect("kept");
    assert!(!b.retired);
    assert_eq!(b.filiere, "MHEMO", "the curated filière is carried over");
    assert_eq!(b.synonyms, ["Factor IX deficiency"]);
    assert_eq!(b.icd10_mappings[0].relation, "E");
    let drugs = app
        .reference
        .list_drugs(pb::ListDrugsRequest {
            atc_prefix: "B02BX".into(),
            page: None,
            include_retired: true,
        })
        .await
        .expect("drugs")
        .into_inner()
        .drugs;
    let concizumab = drugs.iter().find(|d| d.atc == "B02BX07").expect("retired drug listed");
    assert!(concizumab.retired && concizumab.followed);
    let emicizumab = drugs.iter().find(|d| d.atc == "B02BX06").expect("kept");
    assert_eq!(
        (emicizumab.brand.as_str(), emicizumab.followed, emicizumab.retired),
        ("Hemlibra", true, false)
    );

    // Every stored record naming them reads as before.
    let read = app
        .registry
        .get_patient(pb::GetRequest { id: patient.clone() })
        .await
        .expect("the patient reads");
    assert_eq!(read.into_inner().diagnoses[0].orpha_code, "98878");
    let episode = app
        .registry
        .get_episode(pb::GetRequest { id: episode_id.clone() })
        .await
        .expect("the episode reads")
        .into_inner();
    assert_eq!(episode.indication_orpha_code, "98878");
    for (kind, id) in [
        (pb::RecordKind::Patient, &patient),
        (pb::RecordKind::Episode, &episode_id),
        (pb::RecordKind::Cohort, &cohort),
    ] {
        app.registry
            .get_history(pb::GetHistoryRequest {
                kind: kind as i32,
                id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("the history of a {kind:?} reads: {e:?}"));
    }
    app.registry
        .list_episodes(pb::ListEpisodesRequest::default())
        .await
        .expect("episodes list");

    // New input naming them is refused, with the field and why.
    let mut second = app.patient_request(2);
    let refused = app
        .registry
        .register_patient(second.clone())
        .await
        .expect_err("retired diagnosis");
    assert_eq!(violated_fields(&refused), ["diagnoses[0].orpha_code"]);
    assert_eq!(reason_of(&refused, "diagnoses[0].orpha_code"), "RETIRED_CODE");
    second.diagnoses[0].orpha_code = "123456".into();
    let unknown = app
        .registry
        .register_patient(second.clone())
        .await
        .expect_err("unknown diagnosis");
    assert_eq!(reason_of(&unknown, "diagnoses[0].orpha_code"), "UNKNOWN_CODE");
    second.diagnoses[0].orpha_code = "83330".into();
    second.diagnoses[0].icd10 = "G12.0".into();
    let second = app
        .registry
        .register_patient(second)
        .await
        .expect("a code of the new release is accepted")
        .into_inner()
        .meta
        .expect("meta")
        .id;
    let mut declaration = app.aac_declaration(&second, &cohort, &rpps, "episode-2");
    let refused = app
        .registry
        .declare_episode(declaration.clone())
        .await
        .expect_err("retired indication");
    assert_eq!(violated_fields(&refused), ["indication_orpha_code"]);
    declaration.indication_orpha_code = "98879".into();
    app.registry
        .declare_episode(declaration)
        .await
        .expect("an indication still in force is accepted, in a cohort whose drug was retired since");
    let refused = app
        .manager
        .create_cohort(pb::CreateCohortRequest {
            idempotency_key: "cohort-retired".into(),
            name: "Concizumab again".into(),
            filiere: "MHEMO".into(),
            pathway: pb::Pathway::Aac as i32,
            drug_atc: "B02BX07".into(),
            orpha_codes: vec!["98879".into(), "98878".into()],
            framework_id: String::new(),
            follow_up_months: 3,
        })
        .await
        .expect_err("retired drug and disease");
    assert_eq!(violated_fields(&refused), ["drug_atc", "orpha_codes[1]"]);

    // MedDRA codes: by format only while no MedDRA release is in force (none ships); against
    // the release once a licensee imports theirs.
    let adverse_event = |key: &str, pt: &str, soc: &str| pb::RecordAdverseEventRequest {
        idempotency_key: key.into(),
        episode_id: episode_id.clone(),
        onset_date: "2026-05-02".into(),
        meddra_pt_code: pt.into(),
        meddra_soc_code: soc.into(),
        serious: false,
        outcome: pb::AeOutcome::Recovered as i32,
        causality: pb::Causality::PossiblyRelated as i32,
        pv_declaration_date: String::new(),
        pv_reference: String::new(),
        pv_receiver: String::new(),
        case_details: None,
    };
    app.registry
        .record_adverse_event(adverse_event("ae-1", "10022086", "10018065"))
        .await
        .expect("any well-formed MedDRA code before a MedDRA release");
    let meddra = |name: &'static str, bytes: &'static [u8]| InputFile { name, bytes };
    let content = files::meddra::parse(
        files::meddra::Files {
            soc: meddra("soc.asc", include_bytes!("../fixtures/reference/meddra/soc.asc")),
            pt: meddra("pt.asc", include_bytes!("../fixtures/reference/meddra/pt.asc")),
            llt: meddra("llt.asc", include_bytes!("../fixtures/reference/meddra/llt.asc")),
            mdhier: meddra("mdhier.asc", include_bytes!("../fixtures/reference/meddra/mdhier.asc")),
            release: None,
        },
        Some("99.0 English"),
    )
    .expect("parses");
    observatory_app::reference::import_release(&local, &call("ImportReferenceRelease"), content)
        .await
        .expect("import meddra");
    // Accepted until the server's catalogue refresh (1 second here), refused after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut attempt = 0;
    let refused = loop {
        attempt += 1;
        match app
            .registry
            .record_adverse_event(adverse_event(&format!("ae-2-{attempt}"), "10022086", "10018065"))
            .await
        {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the server never saw the MedDRA release"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(violated_fields(&refused), ["meddra_pt_code", "meddra_soc_code"]);
    assert_eq!(reason_of(&refused, "meddra_pt_code"), "UNKNOWN_CODE");
    app.registry
        .record_adverse_event(adverse_event("ae-3", "90000101", "90000002"))
        .await
        .expect("a PT and SOC of the release");
    // The lowest level term reported: one of the release, under the event's PT.
    let with_llt = |key: &str, llt: &str| pb::RecordAdverseEventRequest {
        case_details: Some(pb::CaseDetails {
            meddra_llt_code: llt.into(),
            ..Default::default()
        }),
        ..adverse_event(key, "90000101", "90000002")
    };
    let refused = app
        .registry
        .record_adverse_event(with_llt("ae-4", "90001003"))
        .await
        .expect_err("an LLT of another PT");
    assert_eq!(reason_of(&refused, "case_details.meddra_llt_code"), "OTHER_PT");
    let refused = app
        .registry
        .record_adverse_event(with_llt("ae-5", "90009999"))
        .await
        .expect_err("an LLT not in the release");
    assert_eq!(reason_of(&refused, "case_details.meddra_llt_code"), "UNKNOWN_CODE");
    app.registry
        .record_adverse_event(with_llt("ae-6", "90001001"))
        .await
        .expect("an LLT of the event's PT");

    // The imports are in the audit trail, as the command line's; the shipped release in the
    // event of the migration that recorded it.
    let events = app.store.audit_events_after(0, 10_000).await.expect("audit");
    let imports: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.targets.contains("REFERENCE_RELEASE"))
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        imports,
        [
            ("LoadReferenceData", "reference-data"),
            ("ImportReferenceRelease", "command-line"),
            ("ImportReferenceRelease", "command-line"),
            ("ImportReferenceRelease", "command-line"),
        ]
    );
    app.stop().await;
}
