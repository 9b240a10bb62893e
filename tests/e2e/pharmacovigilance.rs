//! Adverse events as pharmacovigilance cases: the ICH E2B(R3) fields a regional centre needs,
//! checked together.

use observatory_proto::v1 as pb;

use crate::corrections::started_aac;
use crate::helpers::{Backend, scoped_token, spawn_app, violated_fields};
use crate::on_both_backends;

on_both_backends!(
    an_adverse_event_carries_the_e2b_case_fields_checked_together,
    serious_events_not_declared_are_on_the_worklist_until_declared,
    adverse_events_are_exported_as_e2b_cases_and_case_sheets_within_scope,
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
        pv_receiver: String::new(),
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

/// Reads an XML document whole (failing on any malformation) and returns its text contents,
/// unescaped, and how many elements of each name it holds.
fn xml_texts(xml: &str) -> (Vec<String>, std::collections::HashMap<String, usize>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut texts, mut names) = (Vec::new(), std::collections::HashMap::new());
    // A text arrives in pieces around its entity references: joined until the next tag.
    let mut text = String::new();
    loop {
        let event = reader.read_event().expect("well-formed XML");
        match &event {
            Event::Text(t) => {
                text.push_str(&t.decode().expect("text"));
                continue;
            }
            Event::GeneralRef(r) => {
                text.push_str(match r.decode().expect("reference").as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unexpected entity {other}"),
                });
                continue;
            }
            _ => {}
        }
        if !text.trim().is_empty() {
            texts.push(std::mem::take(&mut text));
        }
        text.clear();
        match event {
            Event::Eof => return (texts, names),
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8 name");
                *names.entry(name).or_insert(0) += 1;
            }
            _ => {}
        }
    }
}

/// `ExportAdverseEvents`: one event as an E2B(R3) message whose elements carry the case's
/// fields with the ICH codes, and as a case sheet; a period's events in pages, serious ones
/// only on request; nothing of another centre's; every case audited; bad requests named by
/// field. A declaration names who it went to, and only a declaration does.
async fn adverse_events_are_exported_as_e2b_cases_and_case_sheets_within_scope(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (_, rpps) = app.centre_and_prescriber().await;
    let (episode, _, _) = started_aac(&mut app, &rpps, 97).await;
    let err = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "receiver-alone".into(),
            episode_id: episode.clone(),
            onset_date: "2026-03-02".into(),
            meddra_pt_code: "10037660".into(),
            outcome: pb::AeOutcome::Recovered as i32,
            causality: pb::Causality::Unlikely as i32,
            pv_receiver: "CRPV de Lyon".into(),
            ..Default::default()
        })
        .await
        .expect_err("a receiver without a declaration");
    assert_eq!(violated_fields(&err), ["pv_receiver"]);

    use pb::SeriousnessCriterion as C;
    let serious = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "serious".into(),
            episode_id: episode.clone(),
            onset_date: "2026-03-02".into(),
            meddra_pt_code: "10037660".into(),
            meddra_soc_code: "10018065".into(),
            serious: true,
            outcome: pb::AeOutcome::Recovered as i32,
            causality: pb::Causality::PossiblyRelated as i32,
            pv_declaration_date: "2026-03-04".into(),
            pv_reference: "LY20260042".into(),
            pv_receiver: "CRPV de Lyon".into(),
            case_details: Some(pb::CaseDetails {
                seriousness: vec![C::Hospitalisation as i32, C::LifeThreatening as i32],
                end_date: "2026-03-09".into(),
                meddra_llt_code: "10016558".into(),
                action_taken: pb::DrugAction::Withdrawn as i32,
                dechallenge: pb::ChallengeResult::Positive as i32,
                rechallenge: pb::ChallengeResult::NotDone as i32,
                batch: "LOT-42".into(),
                reporter: pb::ReporterQualification::Physician as i32,
                narrative: "Fever & <chills> one hour after the infusion; resolved on withdrawal.".into(),
                off_label_use: true,
                ..Default::default()
            }),
        })
        .await
        .expect("a serious event, declared")
        .into_inner();
    assert_eq!(serious.pv_receiver, "CRPV de Lyon");
    let serious_id = serious.meta.as_ref().expect("meta").id.clone();
    let mild = app
        .registry
        .record_adverse_event(pb::RecordAdverseEventRequest {
            idempotency_key: "mild".into(),
            episode_id: episode.clone(),
            onset_date: "2026-04-10".into(),
            meddra_pt_code: "10019211".into(),
            outcome: pb::AeOutcome::Recovering as i32,
            causality: pb::Causality::Related as i32,
            ..Default::default()
        })
        .await
        .expect("a mild event")
        .into_inner();
    let mild_id = mild.meta.as_ref().expect("meta").id.clone();

    let export = |selection: pb::export_adverse_events_request::Selection, format: pb::CaseFormat| {
        pb::ExportAdverseEventsRequest {
            selection: Some(selection),
            format: format as i32,
            ..Default::default()
        }
    };
    use pb::export_adverse_events_request::Selection;
    let one = app
        .registry
        .export_adverse_events(export(
            Selection::AdverseEventId(serious_id.clone()),
            pb::CaseFormat::E2bXml,
        ))
        .await
        .expect("one case as E2B")
        .into_inner();
    assert_eq!(one.content_type, "application/xml");
    assert_eq!(one.case_ids, [format!("FR-OBSERVATOIRE-MHEMO-{serious_id}")]);
    assert_eq!(one.file_name, format!("case-{serious_id}.xml"));
    assert!(one.next_page_token.is_empty());
    let xml = String::from_utf8(one.content).expect("utf-8");
    let (texts, names) = xml_texts(&xml);
    assert_eq!(names.get("PORR_IN049016UV"), Some(&1), "one message per case");
    assert_eq!(names.get("MCCI_IN200100UV01"), Some(&1));
    assert!(
        texts
            .iter()
            .any(|t| t == "Fever & <chills> one hour after the infusion; resolved on withdrawal."),
        "the narrative (H.1), escaped in the file, reads back as written"
    );
    let obs = "codeSystem=\"2.16.840.1.113883.3.989.2.1.1.19\"";
    for (expected, what) in [
        (
            format!(
                r#"<code code="33" {obs} displayName="requiresInpatientHospitalization"/><value xsi:type="BL" value="true"/>"#
            ),
            "E.i.3.2c hospitalisation",
        ),
        (
            format!(r#"<code code="21" {obs} displayName="isLifeThreatening"/><value xsi:type="BL" value="true"/>"#),
            "E.i.3.2b life-threatening",
        ),
        (
            format!(r#"<code code="34" {obs} displayName="resultsInDeath"/><value xsi:type="BL" nullFlavor="NI"/>"#),
            "E.i.3.2a not met: no information",
        ),
        (
            r#"<value xsi:type="CE" code="10016558" codeSystem="2.16.840.1.113883.6.163"/>"#.to_owned(),
            "E.i.2.1b the LLT",
        ),
        (
            r#"<low value="20260302"/><!-- E.i.4 --><high value="20260309"/>"#.to_owned(),
            "E.i.4 and E.i.5",
        ),
        (
            r#"<value xsi:type="CE" code="1" codeSystem="2.16.840.1.113883.3.989.2.1.1.11"/>"#.to_owned(),
            "E.i.7 recovered",
        ),
        (
            r#"<code code="1" codeSystem="2.16.840.1.113883.3.989.2.1.1.15"/>"#.to_owned(),
            "G.k.8 drug withdrawn",
        ),
        (
            r#"<value xsi:type="CE" code="4" codeSystem="2.16.840.1.113883.3.989.2.1.1.16"/>"#.to_owned(),
            "G.k.9.i.4 no rechallenge",
        ),
        (
            r#"<value xsi:type="CE" code="11" codeSystem="2.16.840.1.113883.3.989.2.1.1.17"/>"#.to_owned(),
            "G.k.10.r off-label use",
        ),
        ("<lotNumberText>LOT-42</lotNumberText>".to_owned(), "G.k.4.r.7 batch"),
        (
            r#"<code code="1" codeSystem="2.16.840.1.113883.3.989.2.1.1.6"/>"#.to_owned(),
            "C.2.r.4 physician",
        ),
        (
            r#"<code code="2" codeSystem="2.16.840.1.113883.3.989.2.1.1.8"/>"#.to_owned(),
            "C.5.4 individual patient use (AAC)",
        ),
        (
            r#"<value xsi:type="BL" value="true"/><!-- C.1.7 -->"#.to_owned(),
            "C.1.7 serious: expedited",
        ),
        (r#"extension="CRPV de Lyon""#.to_owned(), "N.1.4 the receiver"),
        (r#"<name nullFlavor="MSK"/><!-- D.1 -->"#.to_owned(), "D.1 masked"),
    ] {
        assert!(xml.contains(&expected), "{what}: {expected} not in\n{xml}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Declared to pharmacovigilance on 2026-03-04 to CRPV de Lyon, reference LY20260042")),
        "H.4 names the declaration"
    );

    let sheet = app
        .registry
        .export_adverse_events(pb::ExportAdverseEventsRequest {
            language: "en".into(),
            ..export(Selection::AdverseEventId(serious_id.clone()), pb::CaseFormat::Html)
        })
        .await
        .expect("one case sheet")
        .into_inner();
    assert_eq!(sheet.content_type, "text/html; charset=utf-8");
    let html = String::from_utf8(sheet.content).expect("utf-8");
    for expected in [
        "<html lang=\"en\">",
        "Pharmacovigilance case sheets",
        "Hospitalisation or its prolongation, Life-threatening",
        "to CRPV de Lyon · reference LY20260042",
        "Fever &amp; &lt;chills&gt;",
        "LOT-42",
        "Drug withdrawn",
    ] {
        assert!(html.contains(expected), "{expected} not in the sheet");
    }
    assert!(!html.contains("<script"), "a sheet carries no script");

    let period = |serious_only: bool| {
        Selection::Period(pb::CasePeriod {
            from: "2026-03-01".into(),
            to: "2026-04-30".into(),
            serious_only,
        })
    };
    let all = app
        .registry
        .export_adverse_events(export(period(false), pb::CaseFormat::E2bXml))
        .await
        .expect("a period")
        .into_inner();
    let mut ids = all.case_ids.clone();
    ids.sort();
    let mut expected = vec![
        format!("FR-OBSERVATOIRE-MHEMO-{serious_id}"),
        format!("FR-OBSERVATOIRE-MHEMO-{mild_id}"),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    let (_, names) = xml_texts(&String::from_utf8(all.content).expect("utf-8"));
    assert_eq!(
        names.get("PORR_IN049016UV"),
        Some(&2),
        "one message per case, one batch"
    );
    let serious_only = app
        .registry
        .export_adverse_events(export(period(true), pb::CaseFormat::E2bXml))
        .await
        .expect("serious only")
        .into_inner();
    assert_eq!(serious_only.case_ids, [format!("FR-OBSERVATOIRE-MHEMO-{serious_id}")]);
    let first = app
        .registry
        .export_adverse_events(pb::ExportAdverseEventsRequest {
            page: Some(pb::PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            ..export(period(false), pb::CaseFormat::E2bXml)
        })
        .await
        .expect("first page")
        .into_inner();
    assert_eq!(first.case_ids.len(), 1);
    assert!(!first.next_page_token.is_empty(), "more follow");
    let second = app
        .registry
        .export_adverse_events(pb::ExportAdverseEventsRequest {
            page: Some(pb::PageRequest {
                page_size: 1,
                page_token: first.next_page_token.clone(),
            }),
            ..export(period(false), pb::CaseFormat::E2bXml)
        })
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(second.case_ids.len(), 1);
    assert_ne!(second.case_ids, first.case_ids);
    assert!(second.next_page_token.is_empty());

    // Another centre's prescriber: the event is as unknown as a missing one, the period empty.
    let outsider = scoped_token(
        &app.store,
        observatory_domain::access::Role::Prescriber,
        &["130000011"],
        &[],
    )
    .await;
    let mut elsewhere = app.registry_as(&outsider);
    let denied = elsewhere
        .export_adverse_events(export(
            Selection::AdverseEventId(serious_id.clone()),
            pb::CaseFormat::E2bXml,
        ))
        .await
        .expect_err("out of scope");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let none = elsewhere
        .export_adverse_events(export(period(false), pb::CaseFormat::Html))
        .await
        .expect("an empty file")
        .into_inner();
    assert!(none.case_ids.is_empty());
    assert!(
        String::from_utf8(none.content)
            .expect("utf-8")
            .contains("Aucun événement indésirable")
    );

    // Each case exported is a patient-level read of the event, its episode and its patient.
    let audited = app
        .store
        .scalar_i64("SELECT COUNT(*) FROM audit_events WHERE action = 'ExportAdverseEvents'")
        .await
        .expect("count");
    assert!(audited >= 6, "{audited} exports audited");

    for (request, field) in [
        (
            pb::ExportAdverseEventsRequest {
                format: pb::CaseFormat::E2bXml as i32,
                ..Default::default()
            },
            "selection",
        ),
        (
            export(
                Selection::AdverseEventId(serious_id.clone()),
                pb::CaseFormat::Unspecified,
            ),
            "format",
        ),
        (
            pb::ExportAdverseEventsRequest {
                language: "de".into(),
                ..export(Selection::AdverseEventId(serious_id.clone()), pb::CaseFormat::Html)
            },
            "language",
        ),
        (
            export(
                Selection::Period(pb::CasePeriod {
                    from: "2026-04-01".into(),
                    to: "2026-03-01".into(),
                    serious_only: false,
                }),
                pb::CaseFormat::Html,
            ),
            "period.to",
        ),
        (
            export(
                Selection::Period(pb::CasePeriod {
                    from: "2020-01-01".into(),
                    to: "2026-03-01".into(),
                    serious_only: false,
                }),
                pb::CaseFormat::Html,
            ),
            "period.to",
        ),
        (
            pb::ExportAdverseEventsRequest {
                page: Some(pb::PageRequest {
                    page_size: 101,
                    page_token: String::new(),
                }),
                ..export(period(false), pb::CaseFormat::Html)
            },
            "page.page_size",
        ),
    ] {
        let err = app.registry.export_adverse_events(request).await.expect_err(field);
        assert_eq!(violated_fields(&err), [field]);
    }
    app.stop().await;
}
