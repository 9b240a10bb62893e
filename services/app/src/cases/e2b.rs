//! A case file as an ICH E2B(R3) individual case safety report message: the HL7 v3 batch
//! `MCCI_IN200100UV01`, one `PORR_IN049016UV` message per case, with the ICH object identifiers
//! and code lists of the E2B(R3) implementation guide. Each element carries its E2B data
//! element number in a comment beside it, and docs/pharmacovigilance.md maps every registry
//! field to it.
//!
//! What the registry does not hold is left out or sent as the guide's null flavours: the
//! patient's initials and the reporter's name are masked (`MSK`: the registry never had them),
//! a seriousness criterion not met is "no information" (`NI`, the only other value the guide
//! allows), and the birth date, which the guide wants to the day, is replaced by the age at
//! onset (D.2.2) computed from the birth month.

use std::fmt::Write;

use chrono::{DateTime, NaiveDate, Utc};
use observatory_domain::{
    catalogue::EntryKind,
    model::{
        AeOutcome, Causality, ChallengeResult, Dosage, DrugAction, Pathway, ReporterQualification, Route,
        SeriousnessCriterion, Sex,
    },
};

use super::{Case, CaseFile, age_in_months};

/// ICH code lists and identifier namespaces (E2B(R3) implementation guide, Tables 7 and 8).
const ICH_LIST: &str = "2.16.840.1.113883.3.989.2.1.1";
const ICH_ID: &str = "2.16.840.1.113883.3.989.2.1.3";
const OBSERVATION: &str = "2.16.840.1.113883.3.989.2.1.1.19";
const MEDDRA: &str = "2.16.840.1.113883.6.163";
const ISO_5218: &str = "1.0.5218";
const ISO_3166: &str = "1.0.3166.1.2.2";

/// The sender, as C.3 and the batch header name it.
fn sender(file: &CaseFile) -> String {
    let mut filieres: Vec<&str> = file.cases.iter().map(|c| c.cohort.record.filiere.as_str()).collect();
    filieres.sort_unstable();
    filieres.dedup();
    match filieres.as_slice() {
        [one] => format!("OBSERVATOIRE-{one}"),
        _ => "OBSERVATOIRE".to_owned(),
    }
}

/// The receiver: who the cases were declared to when they all name the same one.
fn receiver(file: &CaseFile) -> String {
    let mut names: Vec<&str> = file
        .cases
        .iter()
        .filter_map(|c| c.event.record.pv_receiver.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [one] if file.cases.iter().all(|c| c.event.record.pv_receiver.is_some()) => (*one).to_owned(),
        _ => "CRPV".to_owned(),
    }
}

/// The safety report's unique id (C.1.1, also C.1.8.1 and N.2.r.1): country, sender, the
/// event's registry id.
pub fn case_id(case: &Case) -> String {
    format!("FR-OBSERVATOIRE-{}-{}", case.cohort.record.filiere, case.event.meta.id)
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

fn day(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry (controls other than tab and line breaks).
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// E.i.7 (list .11).
fn outcome_code(o: AeOutcome) -> &'static str {
    match o {
        AeOutcome::Unknown => "0",
        AeOutcome::Recovered => "1",
        AeOutcome::Recovering => "2",
        AeOutcome::NotRecovered => "3",
        AeOutcome::RecoveredWithSequelae => "4",
        AeOutcome::Fatal => "5",
    }
}

/// G.k.8 (list .15).
fn action_code(a: DrugAction) -> &'static str {
    match a {
        DrugAction::Unknown => "0",
        DrugAction::Withdrawn => "1",
        DrugAction::DoseReduced => "2",
        DrugAction::DoseIncreased => "3",
        DrugAction::DoseNotChanged => "4",
        DrugAction::NotApplicable => "9",
    }
}

/// G.k.9.i.4 (list .16); `None` when it is not known whether the drug was given again (the
/// guide then wants the element left out).
fn rechallenge_code(r: ChallengeResult) -> Option<&'static str> {
    match r {
        ChallengeResult::Positive => Some("1"),
        ChallengeResult::Negative => Some("2"),
        ChallengeResult::NotDone => Some("4"),
        ChallengeResult::Unknown => None,
    }
}

/// C.2.r.4 (list .6).
fn reporter_code(r: ReporterQualification) -> &'static str {
    match r {
        ReporterQualification::Physician => "1",
        ReporterQualification::Pharmacist => "2",
        ReporterQualification::OtherHealthProfessional => "3",
        ReporterQualification::Consumer => "5",
    }
}

/// E.i.3.2a-f: the observation code of each criterion, in the guide's order.
const CRITERIA: [(SeriousnessCriterion, &str, &str); 6] = [
    (SeriousnessCriterion::Death, "34", "resultsInDeath"),
    (SeriousnessCriterion::LifeThreatening, "21", "isLifeThreatening"),
    (
        SeriousnessCriterion::Hospitalisation,
        "33",
        "requiresInpatientHospitalization",
    ),
    (
        SeriousnessCriterion::Disability,
        "35",
        "resultsInPersistentOrSignificantDisability",
    ),
    (
        SeriousnessCriterion::CongenitalAnomaly,
        "12",
        "congenitalAnomalyBirthDefect",
    ),
    (
        SeriousnessCriterion::OtherMedicallyImportant,
        "26",
        "otherMedicallyImportantCondition",
    ),
];

/// G.k.4.r.10 route (the ICH route list, .14) for the routes it names unambiguously; the
/// others go as text only.
fn route(r: Route) -> (Option<&'static str>, &'static str) {
    match r {
        Route::Intravenous => (Some("042"), "intravenous"),
        Route::Subcutaneous => (Some("058"), "subcutaneous"),
        Route::Oral => (Some("048"), "oral"),
        Route::Intramuscular => (Some("030"), "intramuscular"),
        Route::Intrathecal => (None, "intrathecal"),
        Route::Other => (None, "other"),
    }
}

/// A dose unit as UCUM writes it (G.k.4.r.1b), for the units prescriptions use; `None` for a
/// unit UCUM has no code for (the dose then goes as text, G.k.4.r.8).
pub fn ucum(unit: &str) -> Option<&'static str> {
    let u = unit.trim().to_lowercase().replace(' ', "").replace('µ', "u");
    Some(match u.as_str() {
        "mg" => "mg",
        "g" => "g",
        "ug" | "mcg" => "ug",
        "ml" => "mL",
        "mg/kg" => "mg/kg",
        "ug/kg" | "mcg/kg" => "ug/kg",
        "mg/m2" | "mg/m²" => "mg/m2",
        "iu" | "ui" => "[iU]",
        "iu/kg" | "ui/kg" => "[iU]/kg",
        _ => return None,
    })
}

/// The dosage in words (G.k.4.r.8).
pub fn dosage_text(d: &Dosage) -> String {
    let mut s = format!("{} {}", d.dose, d.unit);
    if !d.frequency.is_empty() {
        let _ = write!(s, ", {}", d.frequency);
    }
    let _ = write!(s, ", {}", route(d.route).1);
    s
}

/// The causality as the registry's assessor gave it, in words (G.k.9.i.2.r.3).
pub fn causality_text(c: Causality) -> &'static str {
    match c {
        Causality::Related => "related",
        Causality::PossiblyRelated => "possibly related",
        Causality::Unlikely => "unlikely related",
        Causality::NotRelated => "not related",
        Causality::NotAssessable => "not assessable",
    }
}

/// The study type (C.5.4, list .8): a named patient's access (AAC, nominative ATU) is
/// individual patient use; a cohort under a framework or a plain off-label follow-up is
/// another study.
fn study_type(p: Pathway) -> &'static str {
    if p.needs_authorisation() { "2" } else { "3" }
}

/// The suspect drug's product name as reported (G.k.2.2) and its substance (G.k.2.3.r.1).
pub fn drug_names(file: &CaseFile, case: &Case) -> (String, String) {
    let atc = case.episode.record.drug_atc.as_str();
    match file.catalogue.drug(atc) {
        Some(d) if !d.brand.is_empty() => (format!("{} ({})", d.brand, d.name), d.name.clone()),
        Some(d) => (d.name.clone(), d.name.clone()),
        None => (format!("ATC {atc}"), format!("ATC {atc}")),
    }
}

/// The indication as reported (G.k.7.r.1): the disease's name and ORPHA code.
pub fn indication(file: &CaseFile, case: &Case) -> String {
    let code = case.episode.record.indication.as_str();
    match file.catalogue.disease(code) {
        Some(d) => format!("{} (ORPHA:{code})", d.name),
        None => format!("ORPHA:{code}"),
    }
}

/// The case narrative (H.1): the reporter's, or, when none was written, the facts the
/// registry holds, in one sentence.
pub fn narrative(file: &CaseFile, case: &Case) -> String {
    if let Some(n) = case
        .event
        .record
        .details
        .narrative
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    {
        return n.to_owned();
    }
    let e = &case.event.record;
    let (product, _) = drug_names(file, case);
    let mut s = format!(
        "{} adverse event (MedDRA PT {}) with onset on {} in a patient treated with {} under the {} pathway for {}",
        if e.serious { "Serious" } else { "Non-serious" },
        e.meddra_pt,
        e.onset_date,
        product,
        case.episode.record.pathway.code(),
        indication(file, case)
    );
    if let Some(first) = case.episode.record.first_administration_date {
        let _ = write!(s, ", first administered on {first}");
    }
    let _ = write!(
        s,
        "; outcome {}; causality assessed as {}. No narrative was recorded in the registry.",
        e.outcome.code().to_lowercase().replace('_', " "),
        causality_text(e.causality)
    );
    s
}

/// The sender's comment (H.4): where the case comes from and its declaration.
pub fn sender_comment(case: &Case) -> String {
    let e = &case.event.record;
    let ep = &case.episode.record;
    let mut s = format!(
        "Exported from the {} treatment observatory (French rare-disease network). Access pathway: {}",
        case.cohort.record.filiere,
        ep.pathway.code()
    );
    if let Some(f) = &case.framework {
        let _ = write!(
            s,
            " under framework {} ({})",
            f.record.decision_reference, f.record.authority
        );
    }
    let _ = write!(
        s,
        "; cohort \"{}\". Registry ids: event {}, treatment episode {}, patient {} (pseudonymous).",
        case.cohort.record.name, case.event.meta.id, case.episode.meta.id, case.patient.meta.id
    );
    match (e.pv_declaration_date, &e.pv_reference, &e.pv_receiver) {
        (Some(d), reference, receiver) => {
            let _ = write!(s, " Declared to pharmacovigilance on {d}");
            if let Some(r) = receiver {
                let _ = write!(s, " to {r}");
            }
            if let Some(r) = reference {
                let _ = write!(s, ", reference {r}");
            }
            s.push('.');
        }
        (None, _, _) => s.push_str(" Not declared to pharmacovigilance yet."),
    }
    if let Some(d) = e.details.dechallenge {
        let _ = write!(s, " Dechallenge: {}.", d.code().to_lowercase().replace('_', " "));
    }
    s
}

/// The E2B(R3) message of a case file, one `PORR_IN049016UV` per case.
pub fn message(file: &CaseFile) -> String {
    let mut x = String::with_capacity(8192 * file.cases.len().max(1));
    let created = ts(file.created_at);
    let sender = esc(&sender(file));
    let receiver = esc(&receiver(file));
    let batch = format!("{}-{}", sender, file.created_at.format("%Y%m%d%H%M%S%3f"));
    let _ = write!(
        x,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- ICH E2B(R3) individual case safety reports exported by the treatment observatory. -->
<MCCI_IN200100UV01 xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ITSVersion="XML_1.0" xsi:schemaLocation="urn:hl7-org:v3 MCCI_IN200100UV01.xsd">
  <id root="{ICH_ID}.22" extension="{batch}"/><!-- N.1.2 -->
  <creationTime value="{created}"/><!-- N.1.5 -->
  <responseModeCode code="D"/>
  <interactionId root="2.16.840.1.113883.1.6" extension="MCCI_IN200100UV01"/>
  <name code="1" codeSystem="{ICH_LIST}.1" displayName="ichicsr"/><!-- N.1.1 -->
"#
    );
    for case in &file.cases {
        case_message(&mut x, file, case, &sender, &receiver);
    }
    let _ = write!(
        x,
        r#"  <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="{ICH_ID}.14" extension="{receiver}"/></device></receiver><!-- N.1.4 -->
  <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="{ICH_ID}.13" extension="{sender}"/></device></sender><!-- N.1.3 -->
</MCCI_IN200100UV01>
"#
    );
    x
}

fn case_message(x: &mut String, file: &CaseFile, case: &Case, sender: &str, receiver: &str) {
    let e = &case.event.record;
    let ep = &case.episode.record;
    let id = esc(&case_id(case));
    let created = ts(file.created_at);
    let reaction_id = &case.event.meta.id;
    let drug_id = &case.episode.meta.id;
    let _ = write!(
        x,
        r#"  <PORR_IN049016UV>
    <id root="{ICH_ID}.1" extension="{id}"/><!-- N.2.r.1 -->
    <creationTime value="{created}"/><!-- N.2.r.4 -->
    <interactionId root="2.16.840.1.113883.1.6" extension="PORR_IN049016UV"/>
    <processingCode code="P"/>
    <processingModeCode code="T"/>
    <acceptAckCode code="AL"/>
    <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="{ICH_ID}.12" extension="{receiver}"/></device></receiver><!-- N.2.r.3 -->
    <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="{ICH_ID}.11" extension="{sender}"/></device></sender><!-- N.2.r.2 -->
    <controlActProcess classCode="CACT" moodCode="EVN">
      <code code="PORR_TE049016UV" codeSystem="2.16.840.1.113883.1.18"/>
      <effectiveTime value="{created}"/><!-- C.1.2 -->
      <subject typeCode="SUBJ">
        <investigationEvent classCode="INVSTG" moodCode="EVN">
          <id root="{ICH_ID}.1" extension="{id}"/><!-- C.1.1 -->
          <id root="{ICH_ID}.2" extension="{id}"/><!-- C.1.8.1 -->
          <code code="PAT_ADV_EVNT" codeSystem="2.16.840.1.113883.5.4"/>
          <text>{narrative}</text><!-- H.1 -->
          <statusCode code="active"/>
          <effectiveTime><low value="{first}"/></effectiveTime><!-- C.1.4 -->
          <availabilityTime value="{latest}"/><!-- C.1.5 -->
          <component typeCode="COMP">
            <adverseEventAssessment classCode="INVSTG" moodCode="EVN">
              <subject1 typeCode="SBJ">
                <primaryRole classCode="INVSBJ">
                  <player1 classCode="PSN" determinerCode="INSTANCE">
                    <name nullFlavor="MSK"/><!-- D.1 -->
"#,
        narrative = esc(&narrative(file, case)),
        first = day(case.first_recorded.date_naive()),
        latest = day(case.event.meta.recorded_at.date_naive()),
    );
    let _ = match case.patient.record.sex {
        Sex::Male => writeln!(
            x,
            r#"                    <administrativeGenderCode code="1" codeSystem="{ISO_5218}"/><!-- D.5 -->"#
        ),
        Sex::Female => writeln!(
            x,
            r#"                    <administrativeGenderCode code="2" codeSystem="{ISO_5218}"/><!-- D.5 -->"#
        ),
        Sex::Unknown => writeln!(
            x,
            r#"                    <administrativeGenderCode nullFlavor="UNK"/><!-- D.5 -->"#
        ),
    };
    x.push_str("                  </player1>\n");
    // C.5: the follow-up the case was collected in.
    let study_number = case
        .framework
        .as_ref()
        .map_or_else(|| case.cohort.meta.id.clone(), |f| f.record.decision_reference.clone());
    let _ = write!(
        x,
        r#"                  <subjectOf1 typeCode="SBJ">
                    <researchStudy classCode="CLNTRL" moodCode="EVN">
                      <id root="{ICH_ID}.5" extension="{number}"/><!-- C.5.3 -->
                      <code code="{kind}" codeSystem="{ICH_LIST}.8"/><!-- C.5.4 -->
                      <title>{title}</title><!-- C.5.2 -->
                    </researchStudy>
                  </subjectOf1>
"#,
        number = esc(&study_number),
        kind = study_type(ep.pathway),
        title = esc(&case.cohort.record.name),
    );
    if let Some(months) = age_in_months(case.patient.record.birth_year_month, e.onset_date) {
        let (value, unit) = if months >= 24 {
            (months / 12, "a")
        } else {
            (months, "mo")
        };
        let _ = write!(
            x,
            r#"                  <subjectOf2 typeCode="SBJ"><observation classCode="OBS" moodCode="EVN">
                    <code code="3" codeSystem="{OBSERVATION}" displayName="age"/>
                    <value xsi:type="PQ" value="{value}" unit="{unit}"/><!-- D.2.2a, D.2.2b -->
                  </observation></subjectOf2>
"#
        );
    }
    if let Some(w) = case.weight_kg {
        let _ = write!(
            x,
            r#"                  <subjectOf2 typeCode="SBJ"><observation classCode="OBS" moodCode="EVN">
                    <code code="7" codeSystem="{OBSERVATION}" displayName="bodyWeight"/>
                    <value xsi:type="PQ" value="{w}" unit="kg"/><!-- D.3 -->
                  </observation></subjectOf2>
"#
        );
    }
    reaction(x, file, case, reaction_id);
    drug(x, file, case, drug_id, reaction_id);
    x.push_str("                </primaryRole>\n              </subject1>\n");
    let _ = write!(
        x,
        r#"              <component typeCode="COMP"><causalityAssessment classCode="OBS" moodCode="EVN">
                <code code="20" codeSystem="{OBSERVATION}" displayName="interventionCharacterization"/>
                <value xsi:type="CE" code="1" codeSystem="{ICH_LIST}.13"/><!-- G.k.1: suspect -->
                <subject2 typeCode="SUBJ"><productUseReference classCode="SBADM" moodCode="EVN"><id root="{drug_id}"/></productUseReference></subject2>
              </causalityAssessment></component>
              <component typeCode="COMP"><causalityAssessment classCode="OBS" moodCode="EVN">
                <code code="39" codeSystem="{OBSERVATION}" displayName="causality"/>
                <value xsi:type="ST">{result}</value><!-- G.k.9.i.2.r.3 -->
                <methodCode><originalText>Global introspection</originalText></methodCode><!-- G.k.9.i.2.r.2 -->
                <author typeCode="AUT"><assignedEntity classCode="ASSIGNED"><code><originalText>Prescriber (treatment observatory)</originalText></code></assignedEntity></author><!-- G.k.9.i.2.r.1 -->
                <subject1 typeCode="SUBJ"><adverseEffectReference classCode="OBS" moodCode="EVN"><id root="{reaction_id}"/></adverseEffectReference></subject1>
                <subject2 typeCode="SUBJ"><productUseReference classCode="SBADM" moodCode="EVN"><id root="{drug_id}"/></productUseReference></subject2>
              </causalityAssessment></component>
              <component1 typeCode="COMP"><observationEvent classCode="OBS" moodCode="EVN">
                <code code="10" codeSystem="{OBSERVATION}" displayName="comment"/>
                <value xsi:type="ED">{comment}</value><!-- H.4 -->
                <author typeCode="AUT"><assignedEntity classCode="ASSIGNED"><code code="1" codeSystem="{ICH_LIST}.21"/></assignedEntity></author>
              </observationEvent></component1>
            </adverseEventAssessment>
          </component>
          <component typeCode="COMP"><observationEvent classCode="OBS" moodCode="EVN">
            <code code="1" codeSystem="{OBSERVATION}" displayName="additionalDocumentsAvailable"/>
            <value xsi:type="BL" value="false"/><!-- C.1.6.1 -->
          </observationEvent></component>
          <component typeCode="COMP"><observationEvent classCode="OBS" moodCode="EVN">
            <code code="23" codeSystem="{OBSERVATION}" displayName="localCriteriaForExpedited"/>
            <value xsi:type="BL" value="{expedited}"/><!-- C.1.7 -->
          </observationEvent></component>
          <outboundRelationship typeCode="SPRT"><relatedInvestigation classCode="INVSTG" moodCode="EVN">
            <code code="1" codeSystem="{ICH_LIST}.22" displayName="initialReport"/>
            <subjectOf2 typeCode="SUBJ"><controlActEvent classCode="CACT" moodCode="EVN"><author typeCode="AUT"><assignedEntity classCode="ASSIGNED"><code code="2" codeSystem="{ICH_LIST}.3"/><!-- C.1.8.2 --></assignedEntity></author></controlActEvent></subjectOf2>
          </relatedInvestigation></outboundRelationship>
          <outboundRelationship typeCode="SPRT">
            <priorityNumber value="1"/><!-- C.2.r.5 -->
            <relatedInvestigation classCode="INVSTG" moodCode="EVN">
              <code code="2" codeSystem="{ICH_LIST}.22" displayName="sourceReport"/>
              <subjectOf2 typeCode="SUBJ"><controlActEvent classCode="CACT" moodCode="EVN"><author typeCode="AUT"><assignedEntity classCode="ASSIGNED">
                <assignedPerson classCode="PSN" determinerCode="INSTANCE">
                  <name><given nullFlavor="MSK"/><family nullFlavor="MSK"/></name><!-- C.2.r.1 -->
                  <asQualifiedEntity classCode="QUAL">{qualification}</asQualifiedEntity><!-- C.2.r.4 -->
                  <asLocatedEntity classCode="LOCE"><location classCode="COUNTRY" determinerCode="INSTANCE"><code code="FR" codeSystem="{ISO_3166}"/></location></asLocatedEntity><!-- C.2.r.3 -->
                </assignedPerson>
              </assignedEntity></author></controlActEvent></subjectOf2>
            </relatedInvestigation>
          </outboundRelationship>
          <subjectOf1 typeCode="SUBJ"><controlActEvent classCode="CACT" moodCode="EVN"><author typeCode="AUT"><assignedEntity classCode="ASSIGNED">
            <code code="6" codeSystem="{ICH_LIST}.7"/><!-- C.3.1: other -->
            <representedOrganization classCode="ORG" determinerCode="INSTANCE"><name>{sender}</name></representedOrganization><!-- C.3.2 -->
          </assignedEntity></author></controlActEvent></subjectOf1>
          <subjectOf2 typeCode="SUBJ"><investigationCharacteristic classCode="OBS" moodCode="EVN">
            <code code="1" codeSystem="{ICH_LIST}.23" displayName="ichReportType"/>
            <value xsi:type="CE" code="2" codeSystem="{ICH_LIST}.2"/><!-- C.1.3: report from study -->
          </investigationCharacteristic></subjectOf2>
          <subjectOf2 typeCode="SUBJ"><investigationCharacteristic classCode="OBS" moodCode="EVN">
            <code code="2" codeSystem="{ICH_LIST}.23" displayName="otherCaseIds"/>
            <value xsi:type="BL" nullFlavor="NI"/><!-- C.1.9.1 -->
          </investigationCharacteristic></subjectOf2>
        </investigationEvent>
      </subject>
    </controlActProcess>
  </PORR_IN049016UV>
"#,
        result = causality_text(e.causality),
        comment = esc(&sender_comment(case)),
        expedited = e.serious,
        qualification = match e.details.reporter {
            Some(r) => format!(r#"<code code="{}" codeSystem="{ICH_LIST}.6"/>"#, reporter_code(r)),
            None => r#"<code nullFlavor="UNK"/>"#.to_owned(),
        },
    );
}

/// E.i: the reaction, its dates, term, seriousness criteria and outcome.
fn reaction(x: &mut String, file: &CaseFile, case: &Case, reaction_id: &str) {
    let e = &case.event.record;
    let term = e.details.meddra_llt.as_ref().unwrap_or(&e.meddra_pt);
    let version = file
        .catalogue
        .release(EntryKind::MeddraPt)
        .map(|r| format!(r#" codeSystemVersion="{}""#, esc(&r.version)))
        .unwrap_or_default();
    let high = e
        .details
        .end_date
        .map(|d| format!(r#"<high value="{}"/><!-- E.i.5 -->"#, day(d)))
        .unwrap_or_default();
    let _ = write!(
        x,
        r#"                  <subjectOf2 typeCode="SBJ"><observation classCode="OBS" moodCode="EVN">
                    <id root="{reaction_id}"/>
                    <code code="29" codeSystem="{OBSERVATION}" displayName="reaction"/>
                    <effectiveTime xsi:type="IVL_TS"><low value="{onset}"/><!-- E.i.4 -->{high}</effectiveTime>
                    <value xsi:type="CE" code="{term}" codeSystem="{MEDDRA}"{version}/><!-- E.i.2.1a, E.i.2.1b -->
                    <location typeCode="LOC"><locatedEntity classCode="LOCE"><locatedPlace classCode="COUNTRY" determinerCode="INSTANCE"><code code="FR" codeSystem="{ISO_3166}"/></locatedPlace></locatedEntity></location><!-- E.i.9 -->
"#,
        onset = day(e.onset_date),
    );
    for (criterion, code, name) in CRITERIA {
        let value = if e.details.seriousness.contains(&criterion) {
            r#"value="true""#
        } else {
            r#"nullFlavor="NI""#
        };
        let _ = writeln!(
            x,
            r#"                    <outboundRelationship2 typeCode="PERT"><observation classCode="OBS" moodCode="EVN"><code code="{code}" codeSystem="{OBSERVATION}" displayName="{name}"/><value xsi:type="BL" {value}/></observation></outboundRelationship2><!-- E.i.3.2 -->"#
        );
    }
    let _ = write!(
        x,
        r#"                    <outboundRelationship2 typeCode="PERT"><observation classCode="OBS" moodCode="EVN"><code code="27" codeSystem="{OBSERVATION}" displayName="outcome"/><value xsi:type="CE" code="{outcome}" codeSystem="{ICH_LIST}.11"/></observation></outboundRelationship2><!-- E.i.7 -->
                  </observation></subjectOf2>
"#,
        outcome = outcome_code(e.outcome),
    );
}

/// G.k: the suspect drug, its dosage, indication, action taken and rechallenge.
fn drug(x: &mut String, file: &CaseFile, case: &Case, drug_id: &str, reaction_id: &str) {
    let e = &case.event.record;
    let ep = &case.episode.record;
    let (product, substance) = drug_names(file, case);
    let _ = write!(
        x,
        r#"                  <subjectOf2 typeCode="SBJ"><organizer classCode="CATEGORY" moodCode="EVN">
                    <code code="4" codeSystem="{ICH_LIST}.20" displayName="drugInformation"/>
                    <component typeCode="COMP"><substanceAdministration classCode="SBADM" moodCode="EVN">
                      <id root="{drug_id}"/>
                      <consumable typeCode="CSM"><instanceOfKind classCode="INST"><kindOfProduct classCode="MMAT" determinerCode="KIND">
                        <name>{product}</name><!-- G.k.2.2 -->
                        <ingredient classCode="ACTI"><ingredientSubstance classCode="MMAT" determinerCode="KIND"><name>{substance}</name></ingredientSubstance></ingredient><!-- G.k.2.3.r.1 -->
                      </kindOfProduct></instanceOfKind></consumable>
"#,
        product = esc(&product),
        substance = esc(&substance),
    );
    let dosage = e.details.suspect_dosage.as_ref().or(ep.dosage.as_ref());
    if dosage.is_some() || ep.first_administration_date.is_some() || e.details.batch.is_some() {
        x.push_str(
            "                      <outboundRelationship2 typeCode=\"COMP\"><substanceAdministration classCode=\"SBADM\" moodCode=\"EVN\">\n",
        );
        if let Some(d) = dosage {
            let _ = writeln!(
                x,
                "                        <text>{}</text><!-- G.k.4.r.8 -->",
                esc(&dosage_text(d))
            );
        }
        if let Some(start) = ep.first_administration_date {
            let _ = writeln!(
                x,
                r#"                        <effectiveTime xsi:type="SXPR_TS"><comp xsi:type="IVL_TS" operator="A"><low value="{}"/></comp></effectiveTime><!-- G.k.4.r.4 -->"#,
                day(start)
            );
        }
        if let Some(d) = dosage {
            let (code, text) = route(d.route);
            let _ = match code {
                Some(code) => writeln!(
                    x,
                    r#"                        <routeCode code="{code}" codeSystem="{ICH_LIST}.14"><originalText>{text}</originalText></routeCode><!-- G.k.4.r.10 -->"#
                ),
                None => writeln!(
                    x,
                    "                        <routeCode><originalText>{text}</originalText></routeCode><!-- G.k.4.r.10.1 -->"
                ),
            };
            if let Some(unit) = ucum(&d.unit) {
                let _ = writeln!(
                    x,
                    r#"                        <doseQuantity value="{}" unit="{unit}"/><!-- G.k.4.r.1a, G.k.4.r.1b -->"#,
                    d.dose
                );
            }
        }
        if let Some(batch) = &e.details.batch {
            let _ = writeln!(
                x,
                r#"                        <consumable typeCode="CSM"><instanceOfKind classCode="INST"><productInstanceInstance classCode="MMAT" determinerCode="INSTANCE"><lotNumberText>{}</lotNumberText></productInstanceInstance><kindOfProduct classCode="MMAT" determinerCode="KIND"/></instanceOfKind></consumable><!-- G.k.4.r.7 -->"#,
                esc(batch)
            );
        }
        x.push_str("                      </substanceAdministration></outboundRelationship2>\n");
    }
    if let Some(code) = e.details.rechallenge.and_then(rechallenge_code) {
        let _ = writeln!(
            x,
            r#"                      <outboundRelationship2 typeCode="PERT"><observation classCode="OBS" moodCode="EVN"><code code="31" codeSystem="{OBSERVATION}" displayName="recurranceOfReaction"/><value xsi:type="CE" code="{code}" codeSystem="{ICH_LIST}.16"/><outboundRelationship1 typeCode="REFR"><actReference classCode="OBS" moodCode="EVN"><id root="{reaction_id}"/></actReference></outboundRelationship1></observation></outboundRelationship2><!-- G.k.9.i.4 -->"#
        );
    }
    if e.details.off_label_use || ep.pathway == Pathway::OffLabel {
        let _ = writeln!(
            x,
            r#"                      <outboundRelationship2 typeCode="REFR"><observation classCode="OBS" moodCode="EVN"><code code="9" codeSystem="{OBSERVATION}" displayName="codedDrugInformation"/><value xsi:type="CE" code="11" codeSystem="{ICH_LIST}.17"/></observation></outboundRelationship2><!-- G.k.10.r: off-label use -->"#
        );
    }
    let _ = writeln!(
        x,
        r#"                      <outboundRelationship2 typeCode="REFR"><observation classCode="OBS" moodCode="EVN"><code code="2" codeSystem="{OBSERVATION}" displayName="additionalInformation"/><value xsi:type="ST">{}</value></observation></outboundRelationship2><!-- G.k.11 -->"#,
        esc(&format!(
            "Access pathway {}{}",
            ep.pathway.code(),
            case.framework
                .as_ref()
                .map(|f| format!(", framework {}", f.record.decision_reference))
                .unwrap_or_default()
        ))
    );
    let _ = writeln!(
        x,
        r#"                      <inboundRelationship typeCode="RSON"><observation classCode="OBS" moodCode="EVN"><code code="19" codeSystem="{OBSERVATION}" displayName="indication"/><value xsi:type="CE"><originalText>{}</originalText></value><performer typeCode="PRF"><assignedEntity classCode="ASSIGNED"><code code="3" codeSystem="{ICH_LIST}.21"/></assignedEntity></performer></observation></inboundRelationship><!-- G.k.7.r.1 -->"#,
        esc(&indication(file, case))
    );
    if let Some(a) = e.details.action_taken {
        let _ = writeln!(
            x,
            r#"                      <inboundRelationship typeCode="CAUS"><act classCode="ACT" moodCode="EVN"><code code="{}" codeSystem="{ICH_LIST}.15"/></act></inboundRelationship><!-- G.k.8 -->"#,
            action_code(a)
        );
    }
    x.push_str(
        "                    </substanceAdministration></component>\n                  </organizer></subjectOf2>\n",
    );
}
