//! A case file as case sheets a person reads: one self-contained HTML page (no script, no
//! external resource), a sheet per case, laid out to print one per page (the browser's "print
//! to PDF" gives the PDF a centre files). French by default, English on request.

use std::fmt::Write;

use chrono::NaiveDate;
use observatory_domain::catalogue::EntryKind;

use super::{Case, CaseFile, age_in_months, e2b};

/// The language of a sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "fr" => Some(Lang::Fr),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    fn pick(self, fr: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }

    fn date(self, d: NaiveDate) -> String {
        match self {
            Lang::Fr => d.format("%d/%m/%Y").to_string(),
            Lang::En => d.format("%Y-%m-%d").to_string(),
        }
    }
}

/// The label of a coded value (its code when the table has none).
fn label(lang: Lang, code: &str) -> String {
    let (fr, en) = match code {
        "FEMALE" => ("Féminin", "Female"),
        "MALE" => ("Masculin", "Male"),
        "RECOVERED" => ("Rétabli", "Recovered"),
        "RECOVERING" => ("En cours de rétablissement", "Recovering"),
        "NOT_RECOVERED" => ("Non rétabli", "Not recovered"),
        "RECOVERED_WITH_SEQUELAE" => ("Rétabli avec séquelles", "Recovered with sequelae"),
        "FATAL" => ("Décès", "Fatal"),
        "DEATH" => ("Décès", "Death"),
        "LIFE_THREATENING" => ("Mise en jeu du pronostic vital", "Life-threatening"),
        "HOSPITALISATION" => (
            "Hospitalisation ou prolongation d'hospitalisation",
            "Hospitalisation or its prolongation",
        ),
        "DISABILITY" => ("Invalidité ou incapacité", "Disability or incapacity"),
        "CONGENITAL_ANOMALY" => ("Anomalie congénitale", "Congenital anomaly"),
        "OTHER_MEDICALLY_IMPORTANT" => ("Autre situation médicale grave", "Other medically important condition"),
        "WITHDRAWN" => ("Médicament arrêté", "Drug withdrawn"),
        "DOSE_REDUCED" => ("Dose diminuée", "Dose reduced"),
        "DOSE_INCREASED" => ("Dose augmentée", "Dose increased"),
        "DOSE_NOT_CHANGED" => ("Dose inchangée", "Dose not changed"),
        "NOT_APPLICABLE" => ("Sans objet", "Not applicable"),
        "POSITIVE" => ("Positif", "Positive"),
        "NEGATIVE" => ("Négatif", "Negative"),
        "NOT_DONE" => ("Non fait", "Not done"),
        "PHYSICIAN" => ("Médecin", "Physician"),
        "PHARMACIST" => ("Pharmacien", "Pharmacist"),
        "OTHER_HEALTH_PROFESSIONAL" => ("Autre professionnel de santé", "Other health professional"),
        "CONSUMER" => ("Patient ou proche", "Patient or relative"),
        "RELATED" => ("Lié", "Related"),
        "POSSIBLY_RELATED" => ("Possiblement lié", "Possibly related"),
        "UNLIKELY" => ("Peu probable", "Unlikely"),
        "NOT_RELATED" => ("Non lié", "Not related"),
        "NOT_ASSESSABLE" => ("Non évaluable", "Not assessable"),
        "AAC" => ("Autorisation d'accès compassionnel (AAC)", "Compassionate access (AAC)"),
        "AAP_PRE" => ("Accès précoce avant AMM", "Early access before marketing authorisation"),
        "AAP_POST" => ("Accès précoce après AMM", "Early access after marketing authorisation"),
        "CPC" => (
            "Cadre de prescription compassionnelle (CPC)",
            "Compassionate prescription framework (CPC)",
        ),
        "OFF_LABEL" => ("Prescription hors AMM", "Off-label prescription"),
        "DIRECT" => ("Accès direct", "Direct access"),
        "ATU_NOMINATIVE" => ("ATU nominative", "Named-patient ATU"),
        "ATU_COHORT" => ("ATU de cohorte", "Cohort ATU"),
        "RTU" => (
            "Recommandation temporaire d'utilisation (RTU)",
            "Temporary use recommendation (RTU)",
        ),
        "COMMON_LAW" => ("Droit commun", "Common law"),
        "UNKNOWN" => ("Inconnu", "Unknown"),
        "INTRAVENOUS" => ("intraveineuse", "intravenous"),
        "SUBCUTANEOUS" => ("sous-cutanée", "subcutaneous"),
        "ORAL" => ("orale", "oral"),
        "INTRATHECAL" => ("intrathécale", "intrathecal"),
        "INTRAMUSCULAR" => ("intramusculaire", "intramuscular"),
        "OTHER" => ("autre voie", "other route"),
        other => return other.to_owned(),
    };
    lang.pick(fr, en).to_owned()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;color:#1b1b1b;margin:2rem auto;max-width:52rem;padding:0 1rem}\
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem;border-bottom:2px solid #1b4f72;padding-bottom:.2rem}\
h3{font-size:1rem;margin:1rem 0 .3rem;color:#1b4f72}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid #d0d7de}th{width:38%;font-weight:600}\
.case{break-after:page;page-break-after:always}.case:last-child{break-after:auto;page-break-after:auto}\
.muted{color:#555}.serious{color:#9b1c1c;font-weight:700}p.narrative{white-space:pre-wrap;border-left:3px solid #d0d7de;padding-left:.75rem}\
@media print{body{margin:0;max-width:none;font-size:11pt}a{color:inherit}}";

/// The case sheets of a case file, as one HTML page.
pub fn render(file: &CaseFile, lang: Lang) -> String {
    let mut h = String::with_capacity(6000 * file.cases.len().max(1));
    let title = lang.pick("Fiches de cas de pharmacovigilance", "Pharmacovigilance case sheets");
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head><body>\n<header><h1>{title}</h1><p class=\"muted\">{} {} UTC · {} {}</p></header>\n<main>\n",
        lang.code(),
        lang.pick(
            "Exportées par l'observatoire des traitements le",
            "Exported by the treatment observatory on"
        ),
        file.created_at.format("%Y-%m-%d %H:%M"),
        file.cases.len(),
        lang.pick("cas", "case(s)"),
    );
    if file.cases.is_empty() {
        let _ = writeln!(
            h,
            "<p>{}</p>",
            lang.pick(
                "Aucun événement indésirable ne correspond à cette demande.",
                "No adverse event matches this request."
            )
        );
    }
    for case in &file.cases {
        sheet(&mut h, file, case, lang);
    }
    h.push_str("</main></body></html>\n");
    h
}

/// A table of (label, value) rows; values are already escaped HTML.
fn table(h: &mut String, rows: &[(&str, String)]) {
    h.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>\n");
}

fn sheet(h: &mut String, file: &CaseFile, case: &Case, lang: Lang) {
    let e = &case.event.record;
    let ep = &case.episode.record;
    let d = &e.details;
    let none = || {
        format!(
            "<span class=\"muted\">{}</span>",
            lang.pick("non renseigné", "not recorded")
        )
    };
    let opt = |v: Option<String>| v.map(|s| esc(&s)).unwrap_or_else(none);
    let meddra_name = |kind: EntryKind, code: &str| {
        file.catalogue
            .meddra(kind, code)
            .map(|t| format!("{code} · {}", t.name))
            .unwrap_or_else(|| code.to_owned())
    };
    let _ = writeln!(
        h,
        "<article class=\"case\" aria-labelledby=\"case-{id}\"><h2 id=\"case-{id}\">{} <code>{}</code></h2>",
        lang.pick("Cas", "Case"),
        esc(&e2b::case_id(case)),
        id = case.event.meta.id,
    );

    let _ = writeln!(
        h,
        "<h3>{}</h3>",
        lang.pick("Cas et déclaration", "Case and declaration")
    );
    let seriousness = if e.serious {
        let criteria: Vec<String> = d.seriousness.iter().map(|c| label(lang, c.code())).collect();
        let mut s = format!("<span class=\"serious\">{}</span>", lang.pick("Grave", "Serious"));
        if !criteria.is_empty() {
            let _ = write!(s, " : {}", esc(&criteria.join(", ")));
        }
        s
    } else {
        lang.pick("Non grave", "Non-serious").to_owned()
    };
    let declaration = match e.pv_declaration_date {
        Some(date) => {
            let mut s = lang.date(date);
            if let Some(to) = &e.pv_receiver {
                let _ = write!(s, " · {} {}", lang.pick("à", "to"), esc(to));
            }
            if let Some(r) = &e.pv_reference {
                let _ = write!(s, " · {} {}", lang.pick("référence", "reference"), esc(r));
            }
            s
        }
        None => format!(
            "<strong>{}</strong>",
            lang.pick(
                "Non déclaré à la pharmacovigilance",
                "Not declared to pharmacovigilance"
            )
        ),
    };
    table(
        h,
        &[
            (lang.pick("Gravité", "Seriousness"), seriousness),
            (lang.pick("Déclaration", "Declaration"), declaration),
            (
                lang.pick("Enregistré dans le registre le", "First recorded on"),
                lang.date(case.first_recorded.date_naive()),
            ),
            (
                lang.pick("Dernière mise à jour", "Last updated"),
                format!(
                    "{} ({} {})",
                    lang.date(case.event.meta.recorded_at.date_naive()),
                    lang.pick("version", "version"),
                    case.event.meta.version
                ),
            ),
            (
                lang.pick("Notificateur", "Reporter"),
                opt(d.reporter.map(|r| label(lang, r.code()))),
            ),
        ],
    );

    let _ = writeln!(h, "<h3>{}</h3>", lang.pick("Patient", "Patient"));
    let age = age_in_months(case.patient.record.birth_year_month, e.onset_date).map(|m| {
        if m >= 24 {
            format!("{} {}", m / 12, lang.pick("ans", "years"))
        } else {
            format!("{m} {}", lang.pick("mois", "months"))
        }
    });
    table(
        h,
        &[
            (
                lang.pick("Sexe", "Sex"),
                esc(&label(lang, case.patient.record.sex.code())),
            ),
            (lang.pick("Âge au début de l'effet", "Age at onset"), opt(age)),
            (
                lang.pick(
                    "Poids (dernière visite avant l'effet)",
                    "Weight (last visit before onset)",
                ),
                opt(case.weight_kg.map(|w| format!("{w} kg"))),
            ),
            (
                lang.pick("Identifiant pseudonyme dans le registre", "Pseudonymous registry id"),
                format!("<code>{}</code>", case.patient.meta.id),
            ),
        ],
    );

    let _ = writeln!(h, "<h3>{}</h3>", lang.pick("Effet indésirable", "Adverse reaction"));
    table(
        h,
        &[
            (
                lang.pick("Terme préférentiel MedDRA (PT)", "MedDRA preferred term (PT)"),
                esc(&meddra_name(EntryKind::MeddraPt, e.meddra_pt.as_str())),
            ),
            (
                lang.pick("Terme du plus bas niveau (LLT)", "Lowest level term (LLT)"),
                opt(d
                    .meddra_llt
                    .as_ref()
                    .map(|c| meddra_name(EntryKind::MeddraLlt, c.as_str()))),
            ),
            (
                lang.pick("Classe de systèmes d'organes (SOC)", "System organ class (SOC)"),
                opt(e
                    .meddra_soc
                    .as_ref()
                    .map(|c| meddra_name(EntryKind::MeddraSoc, c.as_str()))),
            ),
            (lang.pick("Début", "Onset"), lang.date(e.onset_date)),
            (lang.pick("Fin", "End"), opt(d.end_date.map(|x| lang.date(x)))),
            (lang.pick("Évolution", "Outcome"), esc(&label(lang, e.outcome.code()))),
            (
                lang.pick("Imputabilité (prescripteur)", "Causality (prescriber)"),
                esc(&label(lang, e.causality.code())),
            ),
        ],
    );

    let _ = writeln!(h, "<h3>{}</h3>", lang.pick("Médicament suspect", "Suspect drug"));
    let (product, _) = e2b::drug_names(file, case);
    let dosage = d.suspect_dosage.as_ref().or(ep.dosage.as_ref()).map(|x| {
        let mut s = format!("{} {}", x.dose, x.unit);
        if !x.frequency.is_empty() {
            let _ = write!(s, ", {}", x.frequency);
        }
        let _ = write!(s, ", {} {}", lang.pick("voie", "route"), label(lang, x.route.code()));
        s
    });
    let framework = match &case.framework {
        Some(f) => esc(&format!(
            "{} ({}, {})",
            f.record.decision_reference, f.record.authority, f.record.indication
        )),
        None => lang.pick("Sans objet", "Not applicable").to_owned(),
    };
    table(
        h,
        &[
            (
                lang.pick("Médicament", "Drug"),
                format!("{} · ATC <code>{}</code>", esc(&product), ep.drug_atc),
            ),
            (
                lang.pick("Voie d'accès", "Access pathway"),
                esc(&label(lang, ep.pathway.code())),
            ),
            (lang.pick("Cadre", "Framework"), framework),
            (lang.pick("Cohorte", "Cohort"), esc(&case.cohort.record.name)),
            (lang.pick("Indication", "Indication"), esc(&e2b::indication(file, case))),
            (
                lang.pick("Posologie au moment de l'effet", "Dosage when the reaction occurred"),
                opt(dosage),
            ),
            (
                lang.pick("Première administration", "First administration"),
                opt(ep.first_administration_date.map(|x| lang.date(x))),
            ),
            (lang.pick("Lot", "Batch"), opt(d.batch.clone())),
            (
                lang.pick("Mesure prise", "Action taken"),
                opt(d.action_taken.map(|a| label(lang, a.code()))),
            ),
            (
                lang.pick("Déchallenge", "Dechallenge"),
                opt(d.dechallenge.map(|a| label(lang, a.code()))),
            ),
            (
                lang.pick("Réintroduction", "Rechallenge"),
                opt(d.rechallenge.map(|a| label(lang, a.code()))),
            ),
            (
                lang.pick("Utilisation hors AMM", "Off-label use"),
                if d.off_label_use || ep.pathway == observatory_domain::model::Pathway::OffLabel {
                    lang.pick("Oui", "Yes").to_owned()
                } else {
                    lang.pick("Non", "No").to_owned()
                },
            ),
        ],
    );

    let _ = writeln!(h, "<h3>{}</h3>", lang.pick("Description", "Narrative"));
    let _ = writeln!(h, "<p class=\"narrative\">{}</p>", esc(&e2b::narrative(file, case)));
    let _ = writeln!(
        h,
        "<p class=\"muted\">{}</p></article>",
        esc(&e2b::sender_comment(case))
    );
}
