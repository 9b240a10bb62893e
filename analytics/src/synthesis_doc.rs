//! The synthesis as documents: an editable Word document (DOCX: the reference or competence
//! centre and the rights holder finish it together, the benefit/risk reading in particular) and a
//! self-contained HTML page, in French by default or in English. Both are laid out from the same
//! blocks: headings, paragraphs, the published tables with translated headings and numbers in
//! the language's format, and a methods section.

use std::io::Write;

use chrono::Datelike;
use polars::prelude::*;

use crate::{
    suppress::SUPPRESSED,
    synthesis::{Language, SynthesisManifest, Target},
};

/// One piece of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Title(String),
    Heading(String),
    Subheading(String),
    Paragraph(String),
    /// A paragraph the centres and the rights holder write in the document itself.
    ToComplete(String),
    Table {
        caption: String,
        header: Vec<String>,
        rows: Vec<Vec<String>>,
        /// Columns aligned right (numbers).
        numeric: Vec<bool>,
    },
    Definition(String, String),
}

pub struct Document<'a> {
    manifest: &'a SynthesisManifest,
    tables: &'a [(String, DataFrame)],
    language: Language,
}

/// Section of the document each table belongs to, in order.
const SECTIONS: &[(&str, &[&str])] = &[
    ("patients", &["patients"]),
    ("characteristics", &["characteristics"]),
    ("use", &["conditions_of_use", "dosing", "time_to_treatment"]),
    ("efficacy", &["efficacy", "efficacy_assessments"]),
    (
        "safety",
        &[
            "safety_summary",
            "seriousness",
            "safety",
            "safety_pt",
            "discontinuations",
        ],
    ),
    ("quality", &["completeness", "overdue_follow_ups"]),
];

fn section_title(lang: Language, section: &str) -> &'static str {
    match (lang, section) {
        (Language::Fr, "patients") => "1. Patients",
        (Language::Fr, "characteristics") => "2. Caractéristiques des patients à l'initiation",
        (Language::Fr, "use") => "3. Conditions réelles d'utilisation",
        (Language::Fr, "efficacy") => "4. Efficacité",
        (Language::Fr, "safety") => "5. Sécurité",
        (Language::Fr, "quality") => "6. Qualité et complétude des données",
        (Language::Fr, "benefit_risk") => "7. Lecture du rapport bénéfice/risque",
        (Language::Fr, "methods") => "8. Méthodes",
        (Language::En, "patients") => "1. Patients",
        (Language::En, "characteristics") => "2. Characteristics of patients at initiation",
        (Language::En, "use") => "3. Conditions of actual use",
        (Language::En, "efficacy") => "4. Efficacy",
        (Language::En, "safety") => "5. Safety",
        (Language::En, "quality") => "6. Data quality and completeness",
        (Language::En, "benefit_risk") => "7. Benefit/risk reading",
        (Language::En, "methods") => "8. Methods",
        _ => "",
    }
}

/// Title and definition of each table.
pub(crate) fn table_text(lang: Language, table: &str) -> (&'static str, &'static str) {
    match (lang, table) {
        (Language::Fr, "patients") => (
            "Patients demandés, accordés, refusés, initiés, traités et arrêtés",
            "Patients distincts par fenêtre (période de la synthèse ; cumul depuis l'entrée en vigueur du cadre). Demandés : une demande datée dans la fenêtre. Accordés : une autorisation nominative accordée dans la fenêtre, ou, sous un cadre sans décision par patient (accès précoce, CPC, ATU de cohorte, RTU, accès direct), une inclusion demandée dans la fenêtre. Refusés : une autorisation refusée dans la fenêtre. Initiés : une première administration dans la fenêtre. Traités : en traitement à un moment de la fenêtre. Arrêtés : un traitement arrêté ou remplacé par un autre médicament dans la fenêtre. Exposition : jours de traitement dans la fenêtre, en années-patients (365,25 jours).",
        ),
        (Language::En, "patients") => (
            "Patients requested, granted, refused, initiated, treated and stopped",
            "Distinct patients per window (the synthesis period; cumulative since the framework came into force). Requested: a request dated in the window. Granted: a per-patient authorisation granted in the window, or, under a framework with no decision per patient (early access, CPC, cohort ATU, RTU, direct access), an inclusion requested in it. Refused: an authorisation refused in the window. Initiated: a first administration in the window. On treatment: treated at some time in the window. Stopped: a treatment stopped or replaced by another drug in the window. Exposure: days on treatment within the window, in patient-years (365.25 days).",
        ),
        (Language::Fr, "characteristics") => (
            "Caractéristiques à l'initiation",
            "Patients initiés depuis le début jusqu'à la fin de la période, chacun compté une fois, à son premier traitement : sexe, classe d'âge à la première administration (en années révolues, à partir du mois de naissance), maladie (code ORPHA de l'indication), région de résidence, type du centre initiateur.",
        ),
        (Language::En, "characteristics") => (
            "Characteristics at initiation",
            "Patients initiated from the start to the end of the period, each counted once, at their first treatment: sex, age band at first administration (completed years, from the birth month), disease (ORPHA code of the indication), region of residence, type of the initiating centre.",
        ),
        (Language::Fr, "conditions_of_use") => (
            "Conditions réelles d'utilisation",
            "Traitements débutés jusqu'à la fin de la période : voie d'accès, voie d'administration, fréquence, indication dans ou hors des maladies couvertes par le cadre, axes de la prescription hors AMM (un traitement compte sous chacun de ses axes ; NONE : dans l'AMM), avis de RCP enregistré (NONE : aucun).",
        ),
        (Language::En, "conditions_of_use") => (
            "Conditions of actual use",
            "Treatments started by the end of the period: access pathway, route, frequency, indication within or outside the diseases the framework covers, off-label axes (a treatment counts under each of its axes; NONE: within the label), RCP opinion recorded (NONE: none).",
        ),
        (Language::Fr, "dosing") => (
            "Posologie",
            "Doses des traitements débutés jusqu'à la fin de la période, par voie et unité : traitements, médiane et quartiles (interpolation linéaire).",
        ),
        (Language::En, "dosing") => (
            "Dosing",
            "Doses of the treatments started by the end of the period, per route and unit: treatments, median and quartiles (linear interpolation).",
        ),
        (Language::Fr, "time_to_treatment") => (
            "Délai de la demande à la première administration",
            "Jours entre la demande et la première administration des traitements débutés dans la fenêtre : médiane et quartiles.",
        ),
        (Language::En, "time_to_treatment") => (
            "Time from request to first administration",
            "Days from request to first administration of the treatments started in the window: median and quartiles.",
        ),
        (Language::Fr, "efficacy") => (
            "Critères d'efficacité du protocole",
            "Mesures de la maladie (taux annualisé de saignements, HFMSE, CHOP-INTEND, MG-ADL...) à l'inclusion et à 6, 12 et 24 mois de la première administration. Inclusion : dernière mesure dans les 90 jours qui la précèdent (ou le jour même). À chaque échéance : la mesure la plus proche dans une fenêtre de 60, 90 et 120 jours de part et d'autre, visites jusqu'à la fin de la période. Patients ayant les deux mesures ; moyennes à l'inclusion et à l'échéance ; variation moyenne avec son intervalle de confiance à 95 % (loi de Student).",
        ),
        (Language::En, "efficacy") => (
            "Protocol efficacy measures",
            "Disease measures (annualised bleed rate, HFMSE, CHOP-INTEND, MG-ADL...) at baseline and 6, 12 and 24 months after the first administration. Baseline: the last measure within the 90 days before it (or on its day). At each timepoint: the measure nearest to it within 60, 90 and 120 days either side, visits up to the end of the period. Patients with both measures; means at baseline and at the timepoint; mean change with its 95% confidence interval (Student's t).",
        ),
        (Language::Fr, "efficacy_assessments") => (
            "Évaluation de l'efficacité par le prescripteur",
            "Dernière évaluation de la période de chaque patient vu dans la période : améliorée, stable, aggravée, non évaluable.",
        ),
        (Language::En, "efficacy_assessments") => (
            "Prescriber's efficacy assessment",
            "The last assessment in the period of each patient seen in it: improved, stable, worsened, not assessable.",
        ),
        (Language::Fr, "safety_summary") => (
            "Événements indésirables",
            "Événements indésirables débutés dans la fenêtre : tous, graves, d'issue fatale, déclarés à la pharmacovigilance.",
        ),
        (Language::En, "safety_summary") => (
            "Adverse events",
            "Adverse events with onset in the window: all, serious, fatal, declared to pharmacovigilance.",
        ),
        (Language::Fr, "seriousness") => (
            "Critères de gravité",
            "Événements graves débutés dans la période, par critère de gravité ICH E2B (un événement compte sous chacun de ses critères).",
        ),
        (Language::En, "seriousness") => (
            "Seriousness criteria",
            "Serious events with onset in the period, per ICH E2B seriousness criterion (an event counts under each of its criteria).",
        ),
        (Language::Fr, "safety") => (
            "Événements indésirables par classe de systèmes d'organes (MedDRA)",
            "Événements débutés dans la période, tous et graves, avec l'exposition au médicament dans la période en années-patients et les taux pour 100 années-patients avec leurs intervalles de Poisson exacts à 95 % (Garwood).",
        ),
        (Language::En, "safety") => (
            "Adverse events by system organ class (MedDRA)",
            "Events with onset in the period, all and serious, with exposure to the drug in the period in patient-years and rates per 100 patient-years with exact Poisson 95% intervals (Garwood).",
        ),
        (Language::Fr, "safety_pt") => (
            "Événements indésirables par terme préférentiel (MedDRA)",
            "Les mêmes par terme préférentiel dans sa classe de systèmes d'organes ; les deux tableaux sont protégés ensemble.",
        ),
        (Language::En, "safety_pt") => (
            "Adverse events by preferred term (MedDRA)",
            "The same by preferred term within its system organ class; the two tables are protected together.",
        ),
        (Language::Fr, "discontinuations") => (
            "Arrêts de traitement",
            "Traitements terminés dans la période, par voie d'accès, médicament, issue et motif d'arrêt.",
        ),
        (Language::En, "discontinuations") => (
            "Discontinuations",
            "Treatments that ended in the period, by pathway, drug, outcome and stop reason.",
        ),
        (Language::Fr, "completeness") => (
            "Complétude des données par centre",
            "Parmi les traitements en cours dans la période, les éléments que le registre permet de laisser manquants : sexe et région du patient, posologie ; après 90 jours de traitement, une visite de suivi et une évaluation de l'efficacité ; pour les événements indésirables, l'issue et la classe MedDRA ; pour les graves, la déclaration.",
        ),
        (Language::En, "completeness") => (
            "Data completeness per centre",
            "Among the treatments ongoing in the period, the items the registry lets go missing: the patient's sex and region, the dosing; after 90 days of treatment, a follow-up visit and an efficacy assessment; for adverse events, the outcome and MedDRA class; for serious ones, the declaration.",
        ),
        (Language::Fr, "overdue_follow_ups") => (
            "Fiches de suivi en retard par centre",
            "Traitements en cours à la fin de la période dans une cohorte à calendrier de suivi, et ceux dont la dernière visite (ou la première administration) date de plus que le calendrier plus 30 jours.",
        ),
        (Language::En, "overdue_follow_ups") => (
            "Late follow-up forms per centre",
            "Treatments ongoing at the end of the period in a cohort with a follow-up schedule, and those whose last visit (or first administration) is older than the schedule plus 30 days.",
        ),
        _ => ("", ""),
    }
}

/// Column headings.
fn column_label(lang: Language, column: &str) -> String {
    let fr = match column {
        "window" => "Fenêtre",
        "requested" => "Demandés",
        "granted" => "Accordés",
        "refused" => "Refusés",
        "initiated" => "Initiés",
        "on_treatment" => "Traités",
        "stopped" => "Arrêtés",
        "patient_years" => "Années-patients",
        "characteristic" => "Caractéristique",
        "category" => "Modalité",
        "patients" => "Patients",
        "percent" => "%",
        "item" => "Élément",
        "episodes" => "Traitements",
        "route" => "Voie",
        "dose_unit" => "Unité",
        "median_dose" => "Dose médiane",
        "q1_dose" => "1er quartile",
        "q3_dose" => "3e quartile",
        "median_days" => "Médiane (jours)",
        "q1_days" => "1er quartile",
        "q3_days" => "3e quartile",
        "measure_code" => "Mesure",
        "timepoint" => "Échéance",
        "baseline_mean" => "Moyenne à l'inclusion",
        "value_mean" => "Moyenne à l'échéance",
        "change_mean" => "Variation moyenne",
        "change_ci_low" => "IC 95 % bas",
        "change_ci_high" => "IC 95 % haut",
        "assessment" => "Évaluation",
        "adverse_events" => "Événements",
        "serious" => "Graves",
        "fatal" => "Fatals",
        "declared_to_pharmacovigilance" => "Déclarés",
        "criterion" => "Critère",
        "drug_atc" => "Médicament (ATC)",
        "meddra_soc_code" => "SOC MedDRA",
        "meddra_pt_code" => "PT MedDRA",
        "serious_adverse_events" => "Graves",
        "adverse_events_rate" => "Taux /100 AP",
        "adverse_events_ci_low" => "IC bas",
        "adverse_events_ci_high" => "IC haut",
        "serious_adverse_events_rate" => "Taux graves /100 AP",
        "serious_adverse_events_ci_low" => "IC bas",
        "serious_adverse_events_ci_high" => "IC haut",
        "pathway" => "Voie d'accès",
        "drug_name" => "Médicament",
        "disease_name" => "Maladie",
        "centre_name" => "Centre",
        "region_name" => "Région",
        "meddra_soc_name" => "Classe de systèmes d'organes",
        "meddra_pt_name" => "Terme préférentiel",
        "category_name" => "Libellé",
        "outcome" => "Issue",
        "stop_reason" => "Motif",
        "centre_finess" => "Centre (FINESS)",
        "field" => "Élément",
        "complete" => "Renseignés",
        "complete_percent" => "%",
        "episodes_followed" => "Suivis",
        "overdue" => "En retard",
        "overdue_percent" => "%",
        other => other,
    };
    let en = match column {
        "window" => "Window",
        "requested" => "Requested",
        "granted" => "Granted",
        "refused" => "Refused",
        "initiated" => "Initiated",
        "on_treatment" => "On treatment",
        "stopped" => "Stopped",
        "patient_years" => "Patient-years",
        "characteristic" => "Characteristic",
        "category" => "Category",
        "patients" => "Patients",
        "percent" => "%",
        "item" => "Item",
        "episodes" => "Treatments",
        "route" => "Route",
        "dose_unit" => "Unit",
        "median_dose" => "Median dose",
        "q1_dose" => "1st quartile",
        "q3_dose" => "3rd quartile",
        "median_days" => "Median (days)",
        "q1_days" => "1st quartile",
        "q3_days" => "3rd quartile",
        "measure_code" => "Measure",
        "timepoint" => "Timepoint",
        "baseline_mean" => "Baseline mean",
        "value_mean" => "Mean at timepoint",
        "change_mean" => "Mean change",
        "change_ci_low" => "95% CI low",
        "change_ci_high" => "95% CI high",
        "assessment" => "Assessment",
        "adverse_events" => "Events",
        "serious" => "Serious",
        "fatal" => "Fatal",
        "declared_to_pharmacovigilance" => "Declared",
        "criterion" => "Criterion",
        "drug_atc" => "Drug (ATC)",
        "meddra_soc_code" => "MedDRA SOC",
        "meddra_pt_code" => "MedDRA PT",
        "serious_adverse_events" => "Serious",
        "adverse_events_rate" => "Rate /100 PY",
        "adverse_events_ci_low" => "CI low",
        "adverse_events_ci_high" => "CI high",
        "serious_adverse_events_rate" => "Serious rate /100 PY",
        "serious_adverse_events_ci_low" => "CI low",
        "serious_adverse_events_ci_high" => "CI high",
        "pathway" => "Pathway",
        "drug_name" => "Drug",
        "disease_name" => "Disease",
        "centre_name" => "Centre",
        "region_name" => "Region",
        "meddra_soc_name" => "System organ class",
        "meddra_pt_name" => "Preferred term",
        "category_name" => "Name",
        "outcome" => "Outcome",
        "stop_reason" => "Reason",
        "centre_finess" => "Centre (FINESS)",
        "field" => "Item",
        "complete" => "Recorded",
        "complete_percent" => "%",
        "episodes_followed" => "Followed",
        "overdue" => "Overdue",
        "overdue_percent" => "%",
        other => other,
    };
    match lang {
        Language::Fr => fr.to_owned(),
        Language::En => en.to_owned(),
    }
}

/// Category and value labels; codes not listed here are shown as they are.
fn value_label(lang: Language, value: &str) -> Option<&'static str> {
    Some(match (lang, value) {
        (Language::Fr, "period") => "Période",
        (Language::Fr, "cumulative") => "Cumul",
        (Language::En, "period") => "Period",
        (Language::En, "cumulative") => "Cumulative",
        (Language::Fr, "sex") => "Sexe",
        (Language::Fr, "age_band") => "Classe d'âge (ans)",
        (Language::Fr, "orpha_code") => "Maladie (ORPHA)",
        (Language::Fr, "region") => "Région de résidence",
        (Language::Fr, "centre_type") => "Type de centre",
        (Language::En, "sex") => "Sex",
        (Language::En, "age_band") => "Age band (years)",
        (Language::En, "orpha_code") => "Disease (ORPHA)",
        (Language::En, "region") => "Region of residence",
        (Language::En, "centre_type") => "Type of centre",
        (Language::Fr, "FEMALE") => "Femme",
        (Language::Fr, "MALE") => "Homme",
        (Language::Fr, "UNKNOWN") => "Inconnu",
        (Language::En, "FEMALE") => "Female",
        (Language::En, "MALE") => "Male",
        (Language::En, "UNKNOWN") => "Unknown",
        (Language::Fr, "pathway") => "Voie d'accès",
        (Language::Fr, "route") => "Voie d'administration",
        (Language::Fr, "frequency") => "Fréquence",
        (Language::Fr, "indication") => "Indication",
        (Language::Fr, "off_label_axis") => "Axe hors AMM",
        (Language::Fr, "rcp_opinion") => "Avis de RCP",
        (Language::En, "pathway") => "Pathway",
        (Language::En, "route") => "Route",
        (Language::En, "frequency") => "Frequency",
        (Language::En, "indication") => "Indication",
        (Language::En, "off_label_axis") => "Off-label axis",
        (Language::En, "rcp_opinion") => "RCP opinion",
        (Language::Fr, "WITHIN_FRAMEWORK") => "Dans le cadre",
        (Language::Fr, "OUTSIDE_FRAMEWORK") => "Hors du cadre",
        (Language::En, "WITHIN_FRAMEWORK") => "Within the framework",
        (Language::En, "OUTSIDE_FRAMEWORK") => "Outside the framework",
        (Language::Fr, "NONE") => "Aucun",
        (Language::En, "NONE") => "None",
        (Language::Fr, "NOT_RECORDED") => "Non renseigné",
        (Language::En, "NOT_RECORDED") => "Not recorded",
        (Language::Fr, "IMPROVED") => "Améliorée",
        (Language::Fr, "STABLE") => "Stable",
        (Language::Fr, "WORSENED") => "Aggravée",
        (Language::Fr, "NOT_ASSESSABLE") => "Non évaluable",
        (Language::En, "IMPROVED") => "Improved",
        (Language::En, "STABLE") => "Stable",
        (Language::En, "WORSENED") => "Worsened",
        (Language::En, "NOT_ASSESSABLE") => "Not assessable",
        (Language::Fr, "baseline") => "Inclusion",
        (Language::En, "baseline") => "Baseline",
        (Language::Fr, "M6") => "6 mois",
        (Language::Fr, "M12") => "12 mois",
        (Language::Fr, "M24") => "24 mois",
        (Language::En, "M6") => "6 months",
        (Language::En, "M12") => "12 months",
        (Language::En, "M24") => "24 months",
        (Language::Fr, SUPPRESSED) => "masqué",
        (Language::Fr, "FAVOURABLE") => "Favorable",
        (Language::Fr, "FAVOURABLE_WITH_CONDITIONS") => "Favorable sous conditions",
        (Language::Fr, "UNFAVOURABLE") => "Défavorable",
        (Language::Fr, "DEFERRED") => "Reporté",
        (Language::En, "FAVOURABLE") => "Favourable",
        (Language::En, "FAVOURABLE_WITH_CONDITIONS") => "Favourable with conditions",
        (Language::En, "UNFAVOURABLE") => "Unfavourable",
        (Language::En, "DEFERRED") => "Deferred",
        (Language::Fr, "SUBCUTANEOUS") => "Sous-cutanée",
        (Language::Fr, "INTRAVENOUS") => "Intraveineuse",
        (Language::Fr, "ORAL") => "Orale",
        (Language::Fr, "INTRATHECAL") => "Intrathécale",
        (Language::Fr, "INTRAMUSCULAR") => "Intramusculaire",
        (Language::En, "SUBCUTANEOUS") => "Subcutaneous",
        (Language::En, "INTRAVENOUS") => "Intravenous",
        (Language::En, "ORAL") => "Oral",
        (Language::En, "INTRATHECAL") => "Intrathecal",
        (Language::En, "INTRAMUSCULAR") => "Intramuscular",
        (Language::Fr, "AAC") => "Accès compassionnel (AAC)",
        (Language::Fr, "AAP_PRE") => "Accès précoce pré-AMM",
        (Language::Fr, "AAP_POST") => "Accès précoce post-AMM",
        (Language::Fr, "CPC") => "Cadre de prescription compassionnelle (CPC)",
        (Language::Fr, "OFF_LABEL") => "Hors AMM",
        (Language::Fr, "DIRECT") => "Accès direct",
        (Language::Fr, "ATU_NOMINATIVE") => "ATU nominative",
        (Language::Fr, "ATU_COHORT") => "ATU de cohorte",
        (Language::Fr, "RTU") => "RTU",
        (Language::Fr, "COMMON_LAW") => "Droit commun",
        (Language::En, "AAC") => "Compassionate access (AAC)",
        (Language::En, "AAP_PRE") => "Early access, pre-authorisation",
        (Language::En, "AAP_POST") => "Early access, post-authorisation",
        (Language::En, "CPC") => "Compassionate prescription framework (CPC)",
        (Language::En, "OFF_LABEL") => "Off-label",
        (Language::En, "DIRECT") => "Direct access",
        (Language::En, "ATU_NOMINATIVE") => "Nominative ATU",
        (Language::En, "ATU_COHORT") => "Cohort ATU",
        (Language::En, "RTU") => "RTU",
        (Language::En, "COMMON_LAW") => "Common law",
        (Language::Fr, "INDICATION") => "Indication",
        (Language::Fr, "AGE") => "Âge",
        (Language::Fr, "DOSE") => "Posologie",
        (Language::Fr, "ROUTE") => "Voie",
        (Language::Fr, "DURATION") => "Durée",
        (Language::Fr, "COMBINATION") => "Association",
        (Language::Fr, "CRMR_COORDINATING") => "CRMR coordonnateur",
        (Language::Fr, "CRMR_CONSTITUTIVE") => "CRMR constitutif",
        (Language::Fr, "CCMR") => "CCMR",
        (Language::Fr, "CRC") => "CRC-MHC",
        (Language::Fr, "OTHER") => "Autre",
        (Language::En, "CRMR_COORDINATING") => "CRMR, coordinating site",
        (Language::En, "CRMR_CONSTITUTIVE") => "CRMR, constitutive site",
        (Language::En, "CCMR") => "CCMR",
        (Language::En, "CRC") => "Haemophilia treatment centre (CRC)",
        (Language::En, "OTHER") => "Other",
        _ => return None,
    })
}

/// A published cell as a reader of the language reads it: labels for codes, numbers with the
/// language's decimal separator, masked values marked.
fn display(lang: Language, text: &str) -> String {
    if let Some(label) = value_label(lang, text) {
        return label.to_owned();
    }
    if lang == Language::Fr && text.parse::<f64>().is_ok() && text.contains('.') {
        return text.replace('.', ",");
    }
    text.to_owned()
}

fn date(lang: Language, d: chrono::NaiveDate) -> String {
    match lang {
        Language::Fr => format!("{:02}/{:02}/{}", d.day(), d.month(), d.year()),
        Language::En => d.format("%-d %B %Y").to_string(),
    }
}

fn text_cell(df: &DataFrame, column: &str, row: usize) -> String {
    df.column(column)
        .ok()
        .and_then(|c| c.get(row).ok())
        .map(|v| match v {
            AnyValue::Null => String::new(),
            other => other.str_value().to_string(),
        })
        .unwrap_or_default()
}

impl<'a> Document<'a> {
    pub fn new(manifest: &'a SynthesisManifest, tables: &'a [(String, DataFrame)]) -> Document<'a> {
        Document {
            manifest,
            tables,
            language: manifest.language,
        }
    }

    fn table(&self, name: &str) -> Option<&DataFrame> {
        self.tables.iter().find(|(n, _)| n == name).map(|(_, df)| df)
    }

    /// The document's content, in order.
    pub fn blocks(&self) -> Vec<Block> {
        let lang = self.language;
        let m = self.manifest;
        let fr = lang == Language::Fr;
        let mut out = Vec::new();
        out.push(Block::Title(if fr {
            format!("Synthèse périodique : {}", m.title)
        } else {
            format!("Periodic synthesis: {}", m.title)
        }));
        let what = match &m.target {
            Target::Framework(id) => {
                if fr {
                    format!("Cadre {id}")
                } else {
                    format!("Framework {id}")
                }
            }
            Target::Cohort(id) => {
                if fr {
                    format!("Cohorte {id}")
                } else {
                    format!("Cohort {id}")
                }
            }
        };
        let protocol = match (&m.protocol_type, &m.protocol_version) {
            (Some(t), Some(v)) => format!("{t} {v}"),
            (Some(t), None) => t.clone(),
            _ => "-".to_owned(),
        };
        let facts: Vec<(String, String)> = vec![
            ((if fr { "Objet" } else { "Subject" }).into(), what),
            ((if fr { "Voie d'accès" } else { "Pathway" }).into(), m.pathway.clone()),
            (
                (if fr { "Médicament (ATC)" } else { "Drug (ATC)" }).into(),
                m.drug_atc.clone(),
            ),
            ((if fr { "Protocole" } else { "Protocol" }).into(), protocol),
            (
                (if fr { "Décision" } else { "Decision" }).into(),
                m.decision_reference.clone().unwrap_or_else(|| "-".into()),
            ),
            ((if fr { "Cohortes" } else { "Cohorts" }).into(), m.cohorts.join(" ; ")),
            (
                (if fr { "Période" } else { "Period" }).into(),
                format!(
                    "{} {} {}",
                    date(lang, m.period_from),
                    if fr { "au" } else { "to" },
                    date(lang, m.period_to)
                ),
            ),
            (
                (if fr { "Cumul depuis le" } else { "Cumulative since" }).into(),
                date(lang, m.cumulative_from),
            ),
            (
                (if fr {
                    "Données du registre au"
                } else {
                    "Registry data as of"
                })
                .into(),
                m.as_of.format("%Y-%m-%d %H:%M UTC").to_string(),
            ),
            (
                (if fr { "Instantané" } else { "Snapshot" }).into(),
                m.snapshot_hash.clone(),
            ),
            (
                (if fr { "Logiciel" } else { "Software" }).into(),
                format!("observatory {}", m.code_version),
            ),
        ];
        out.push(Block::Table {
            caption: String::new(),
            header: vec![String::new(), String::new()],
            rows: facts.into_iter().map(|(k, v)| vec![k, v]).collect(),
            numeric: vec![false, false],
        });
        out.push(Block::Paragraph(if fr {
            format!(
                "Les effectifs inférieurs à {t} sont publiés « <{t} » ; d'autres, de {t} ou plus, sont masqués (« masqué ») pour qu'aucun ne puisse être déduit. Les valeurs calculées sur un effectif masqué le sont aussi.",
                t = m.suppression_threshold
            )
        } else {
            format!(
                "Counts below {t} are published as \"<{t}\"; others, of {t} or more, are masked (\"suppressed\") so that none can be worked out. Values computed over a masked count are masked with it.",
                t = m.suppression_threshold
            )
        }));
        for (section, tables) in SECTIONS {
            out.push(Block::Heading(section_title(lang, section).to_owned()));
            for name in *tables {
                let Some(df) = self.table(name) else { continue };
                let (title, definition) = table_text(lang, name);
                out.push(Block::Subheading(title.to_owned()));
                out.push(Block::Paragraph(definition.to_owned()));
                if df.height() == 0 {
                    out.push(Block::Paragraph(
                        (if fr {
                            "Aucune donnée pour cette période."
                        } else {
                            "No data for this period."
                        })
                        .to_owned(),
                    ));
                    continue;
                }
                let columns: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
                // Counts and values (masked ones included) align right; codes do not.
                let numeric: Vec<bool> = columns
                    .iter()
                    .map(|c| {
                        let cells: Vec<String> = (0..df.height()).map(|i| text_cell(df, c, i)).collect();
                        !matches!(
                            c.as_str(),
                            "centre_finess" | "meddra_soc_code" | "meddra_pt_code" | "category" | "drug_atc"
                        ) && cells.iter().any(|t| !t.is_empty())
                            && cells.iter().all(|t| {
                                t.is_empty() || t.parse::<f64>().is_ok() || t.starts_with('<') || t == SUPPRESSED
                            })
                    })
                    .collect();
                out.push(Block::Table {
                    caption: title.to_owned(),
                    header: columns.iter().map(|c| column_label(lang, c)).collect(),
                    rows: (0..df.height())
                        .map(|i| columns.iter().map(|c| display(lang, &text_cell(df, c, i))).collect())
                        .collect(),
                    numeric,
                });
                if let Some(summary) = m.suppression.get(*name)
                    && summary.withheld > 0
                {
                    out.push(Block::Paragraph(if fr {
                        format!(
                            "{} lignes sont retenues (non publiées) : des totaux connus par ailleurs permettraient sinon d'en déduire un petit effectif.",
                            summary.withheld
                        )
                    } else {
                        format!(
                            "{} rows are withheld (not published): totals known elsewhere would otherwise give a small count away.",
                            summary.withheld
                        )
                    }));
                }
            }
        }
        out.push(Block::Heading(section_title(lang, "benefit_risk").to_owned()));
        out.push(Block::ToComplete(if fr {
            "À rédiger par le centre de référence ou de compétence et le titulaire des droits : lecture du rapport bénéfice/risque au vu des données ci-dessus, faits marquants de la période, modifications proposées du protocole.".to_owned()
        } else {
            "To be written by the reference or competence centre and the rights holder: benefit/risk reading in the light of the data above, highlights of the period, proposed changes to the protocol.".to_owned()
        }));
        out.push(Block::Heading(section_title(lang, "methods").to_owned()));
        out.push(Block::Paragraph(if fr {
            "Données : le registre tel qu'il était connu à l'instant indiqué, extrait en un instantané pseudonymisé (Parquet) dont l'empreinte figure ci-dessus ; les patients opposés à la réutilisation de leurs données en sont exclus avec tous leurs enregistrements. Périmètre : les traitements des cohortes rattachées au cadre (ou de la cohorte). Protection des petits effectifs : suppression primaire sous le seuil, suppression complémentaire vérifiée par programmation linéaire contre un lecteur connaissant les totaux de ligne et le total général de chaque tableau ; les lignes qu'un tel lecteur pourrait encore déduire sont retenues. Les tableaux, le manifeste et leurs empreintes SHA-256 accompagnent ce document.".to_owned()
        } else {
            "Data: the registry as known at the instant stated, extracted into a pseudonymised snapshot (Parquet) whose hash is given above; patients who objected to the reuse of their data are excluded with all their records. Scope: the treatments of the cohorts bound to the framework (or of the cohort). Small counts: primary suppression below the threshold, complementary suppression checked by linear programming against a reader who knows each table's line totals and grand total; rows such a reader could still work out are withheld. The tables, the manifest and their SHA-256 hashes come with this document.".to_owned()
        }));
        for (_, tables) in SECTIONS {
            for name in *tables {
                let (title, definition) = table_text(lang, name);
                out.push(Block::Definition(title.to_owned(), definition.to_owned()));
            }
        }
        out
    }

    /// A self-contained HTML page: no script, no external resource.
    pub fn html(&self) -> String {
        let lang = self.language;
        let mut out = format!(
            "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{}</style></head><body><main>",
            lang.code(),
            escape(&self.title()),
            STYLE
        );
        let mut in_definitions = false;
        for block in self.blocks() {
            if !matches!(block, Block::Definition(..)) && in_definitions {
                out.push_str("</dl>");
                in_definitions = false;
            }
            match block {
                Block::Title(t) => out.push_str(&format!("<h1>{}</h1>", escape(&t))),
                Block::Heading(t) => out.push_str(&format!("<h2>{}</h2>", escape(&t))),
                Block::Subheading(t) => out.push_str(&format!("<h3>{}</h3>", escape(&t))),
                Block::Paragraph(t) => out.push_str(&format!("<p>{}</p>", escape(&t))),
                Block::ToComplete(t) => out.push_str(&format!("<p class=\"to-complete\">{}</p>", escape(&t))),
                Block::Table {
                    caption,
                    header,
                    rows,
                    numeric,
                } => {
                    out.push_str("<div class=\"table\"><table>");
                    if !caption.is_empty() {
                        out.push_str(&format!("<caption>{}</caption>", escape(&caption)));
                    }
                    if header.iter().any(|h| !h.is_empty()) {
                        out.push_str("<thead><tr>");
                        for h in &header {
                            out.push_str(&format!("<th scope=\"col\">{}</th>", escape(h)));
                        }
                        out.push_str("</tr></thead>");
                    }
                    out.push_str("<tbody>");
                    for row in rows {
                        out.push_str("<tr>");
                        for (i, cell) in row.iter().enumerate() {
                            let class = if numeric.get(i).copied().unwrap_or(false) {
                                " class=\"n\""
                            } else {
                                ""
                            };
                            out.push_str(&format!("<td{class}>{}</td>", escape(cell)));
                        }
                        out.push_str("</tr>");
                    }
                    out.push_str("</tbody></table></div>");
                }
                Block::Definition(term, text) => {
                    if !in_definitions {
                        out.push_str("<dl>");
                        in_definitions = true;
                    }
                    out.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(&term), escape(&text)));
                }
            }
        }
        if in_definitions {
            out.push_str("</dl>");
        }
        out.push_str("</main></body></html>");
        out
    }

    fn title(&self) -> String {
        match self.language {
            Language::Fr => format!("Synthèse périodique : {}", self.manifest.title),
            Language::En => format!("Periodic synthesis: {}", self.manifest.title),
        }
    }

    /// Writes the Word document (Office Open XML), reproducibly: its parts carry the registry's
    /// cutoff as their date.
    pub fn write_docx(&self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut zip = ::zip::ZipWriter::new(file);
        let at = self.manifest.as_of;
        let stamp = ::zip::DateTime::from_date_and_time(
            u16::try_from(at.year().clamp(1980, 2107)).unwrap_or(1980),
            at.month() as u8,
            at.day() as u8,
            chrono::Timelike::hour(&at) as u8,
            chrono::Timelike::minute(&at) as u8,
            chrono::Timelike::second(&at).min(59) as u8,
        )
        .unwrap_or_default();
        let options = ::zip::write::SimpleFileOptions::default()
            .compression_method(::zip::CompressionMethod::Deflated)
            .last_modified_time(stamp);
        let parts: [(&str, String); 6] = [
            ("[Content_Types].xml", CONTENT_TYPES.to_owned()),
            ("_rels/.rels", ROOT_RELS.to_owned()),
            ("word/_rels/document.xml.rels", DOCUMENT_RELS.to_owned()),
            ("word/styles.xml", STYLES.to_owned()),
            ("docProps/core.xml", self.core_properties()),
            ("word/document.xml", self.document_xml()),
        ];
        for (name, content) in parts {
            zip.start_file(name, options).map_err(std::io::Error::other)?;
            zip.write_all(content.as_bytes())?;
        }
        zip.finish().map_err(std::io::Error::other)?;
        Ok(())
    }

    fn core_properties(&self) -> String {
        let at = self.manifest.as_of.format("%Y-%m-%dT%H:%M:%SZ");
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:title>{}</dc:title><dc:language>{}</dc:language><dc:creator>observatory {}</dc:creator><dcterms:created xsi:type="dcterms:W3CDTF">{at}</dcterms:created><dcterms:modified xsi:type="dcterms:W3CDTF">{at}</dcterms:modified></cp:coreProperties>"#,
            escape(&self.title()),
            self.language.code(),
            escape(&self.manifest.code_version)
        )
    }

    fn document_xml(&self) -> String {
        let mut body = String::new();
        for block in self.blocks() {
            match block {
                Block::Title(t) => body.push_str(&paragraph(Some("Title"), &t)),
                Block::Heading(t) => body.push_str(&paragraph(Some("Heading1"), &t)),
                Block::Subheading(t) => body.push_str(&paragraph(Some("Heading2"), &t)),
                Block::Paragraph(t) => body.push_str(&paragraph(None, &t)),
                Block::ToComplete(t) => body.push_str(&paragraph(Some("ToComplete"), &t)),
                Block::Definition(term, text) => {
                    body.push_str(&paragraph(Some("Term"), &term));
                    body.push_str(&paragraph(None, &text));
                }
                Block::Table {
                    caption,
                    header,
                    rows,
                    numeric,
                } => {
                    if !caption.is_empty() {
                        body.push_str(&paragraph(Some("Caption"), &caption));
                    }
                    body.push_str(r#"<w:tbl><w:tblPr><w:tblStyle w:val="Grid"/><w:tblW w:w="5000" w:type="pct"/><w:tblLook w:val="04A0" w:firstRow="1" w:lastRow="0" w:firstColumn="1" w:lastColumn="0" w:noHBand="0" w:noVBand="1"/></w:tblPr>"#);
                    // Tables of many columns in a smaller type, to keep a portrait page.
                    let style = if header.len() > 8 {
                        "TableTextSmall"
                    } else {
                        "TableText"
                    };
                    if header.iter().any(|h| !h.is_empty()) {
                        body.push_str(r#"<w:tr><w:trPr><w:tblHeader/></w:trPr>"#);
                        for h in &header {
                            body.push_str(&table_cell(style, h, true, false));
                        }
                        body.push_str("</w:tr>");
                    }
                    for row in &rows {
                        body.push_str("<w:tr><w:trPr><w:cantSplit/></w:trPr>");
                        for (i, cell) in row.iter().enumerate() {
                            body.push_str(&table_cell(
                                style,
                                cell,
                                false,
                                numeric.get(i).copied().unwrap_or(false),
                            ));
                        }
                        body.push_str("</w:tr>");
                    }
                    body.push_str("</w:tbl>");
                    body.push_str(&paragraph(None, ""));
                }
            }
        }
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}<w:sectPr><w:pgSz w:w="11906" w:h="16838"/><w:pgMar w:top="1134" w:right="1134" w:bottom="1134" w:left="1134" w:header="567" w:footer="567" w:gutter="0"/></w:sectPr></w:body></w:document>"#
        )
    }
}

fn run(text: &str, bold: bool) -> String {
    let props = if bold { "<w:rPr><w:b/></w:rPr>" } else { "" };
    format!(r#"<w:r>{props}<w:t xml:space="preserve">{}</w:t></w:r>"#, escape(text))
}

fn paragraph(style: Option<&str>, text: &str) -> String {
    let props = style
        .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
        .unwrap_or_default();
    if text.is_empty() {
        return format!("<w:p>{props}</w:p>");
    }
    format!("<w:p>{props}{}</w:p>", run(text, false))
}

fn table_cell(style: &str, text: &str, header: bool, numeric: bool) -> String {
    let align = if numeric { r#"<w:jc w:val="right"/>"# } else { "" };
    // Codes and numbers stay on one line.
    let no_wrap = if !header && !text.contains(' ') && text.chars().count() <= 12 {
        "<w:noWrap/>"
    } else {
        ""
    };
    format!(
        r#"<w:tc><w:tcPr><w:tcW w:w="0" w:type="auto"/>{no_wrap}</w:tcPr><w:p><w:pPr><w:pStyle w:val="{style}"/>{align}</w:pPr>{}</w:p></w:tc>"#,
        run(text, header)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#1a1a1a;margin:0;background:#fff}main{max-width:60rem;margin:0 auto;padding:1.5rem}h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ccc}h3{font-size:1.05rem;margin-bottom:.25rem}p{line-height:1.45}.table{overflow-x:auto}table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}caption{text-align:left;font-weight:600;padding:.25rem 0}th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#eef2f7}td.n{text-align:right;font-variant-numeric:tabular-nums}.to-complete{border:2px dashed #8a6d00;background:#fff8e1;padding:.75rem}dt{font-weight:600;margin-top:.5rem}dd{margin-left:1rem}";

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/><Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/><Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/></Types>"#;

const ROOT_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/></Relationships>"#;

const DOCUMENT_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>"#;

const STYLES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:docDefaults><w:rPrDefault><w:rPr><w:rFonts w:ascii="Calibri" w:hAnsi="Calibri" w:eastAsia="Calibri" w:cs="Calibri"/><w:sz w:val="21"/><w:szCs w:val="21"/><w:lang w:val="fr-FR"/></w:rPr></w:rPrDefault><w:pPrDefault><w:pPr><w:spacing w:after="120" w:line="264" w:lineRule="auto"/></w:pPr></w:pPrDefault></w:docDefaults><w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/><w:qFormat/></w:style><w:style w:type="paragraph" w:styleId="Title"><w:name w:val="Title"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:qFormat/><w:pPr><w:spacing w:after="240"/></w:pPr><w:rPr><w:b/><w:sz w:val="36"/><w:szCs w:val="36"/></w:rPr></w:style><w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:qFormat/><w:pPr><w:keepNext/><w:spacing w:before="360" w:after="120"/><w:outlineLvl w:val="0"/></w:pPr><w:rPr><w:b/><w:color w:val="1F3864"/><w:sz w:val="28"/><w:szCs w:val="28"/></w:rPr></w:style><w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:qFormat/><w:pPr><w:keepNext/><w:spacing w:before="240" w:after="60"/><w:outlineLvl w:val="1"/></w:pPr><w:rPr><w:b/><w:sz w:val="23"/><w:szCs w:val="23"/></w:rPr></w:style><w:style w:type="paragraph" w:styleId="Caption"><w:name w:val="caption"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:qFormat/><w:pPr><w:keepNext/><w:spacing w:after="60"/></w:pPr><w:rPr><w:i/><w:sz w:val="19"/><w:szCs w:val="19"/></w:rPr></w:style><w:style w:type="paragraph" w:styleId="TableText"><w:name w:val="Table Text"/><w:basedOn w:val="Normal"/><w:qFormat/><w:pPr><w:spacing w:after="0" w:line="240" w:lineRule="auto"/></w:pPr><w:rPr><w:sz w:val="18"/><w:szCs w:val="18"/></w:rPr></w:style><w:style w:type="paragraph" w:styleId="TableTextSmall"><w:name w:val="Table Text Small"/><w:basedOn w:val="TableText"/><w:qFormat/><w:rPr><w:sz w:val="14"/><w:szCs w:val="14"/></w:rPr></w:style><w:style w:type="paragraph" w:styleId="Term"><w:name w:val="Term"/><w:basedOn w:val="Normal"/><w:next w:val="Normal"/><w:qFormat/><w:pPr><w:keepNext/><w:spacing w:after="0"/></w:pPr><w:rPr><w:b/></w:rPr></w:style><w:style w:type="paragraph" w:styleId="ToComplete"><w:name w:val="To Complete"/><w:basedOn w:val="Normal"/><w:qFormat/><w:pPr><w:pBdr><w:top w:val="dashed" w:sz="8" w:space="4" w:color="8A6D00"/><w:left w:val="dashed" w:sz="8" w:space="4" w:color="8A6D00"/><w:bottom w:val="dashed" w:sz="8" w:space="4" w:color="8A6D00"/><w:right w:val="dashed" w:sz="8" w:space="4" w:color="8A6D00"/></w:pBdr><w:shd w:val="clear" w:color="auto" w:fill="FFF8E1"/></w:pPr></w:style><w:style w:type="table" w:styleId="Grid"><w:name w:val="Table Grid"/><w:tblPr><w:tblBorders><w:top w:val="single" w:sz="4" w:space="0" w:color="A0A0A0"/><w:left w:val="single" w:sz="4" w:space="0" w:color="A0A0A0"/><w:bottom w:val="single" w:sz="4" w:space="0" w:color="A0A0A0"/><w:right w:val="single" w:sz="4" w:space="0" w:color="A0A0A0"/><w:insideH w:val="single" w:sz="4" w:space="0" w:color="A0A0A0"/><w:insideV w:val="single" w:sz="4" w:space="0" w:color="A0A0A0"/></w:tblBorders><w:tblCellMar><w:left w:w="80" w:type="dxa"/><w:right w:w="80" w:type="dxa"/></w:tblCellMar></w:tblPr></w:style></w:styles>"#;
