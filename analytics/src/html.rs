//! The self-contained HTML report: every published table, charts as inline SVG drawn from the
//! published (suppressed) values only, and a methods section. No script, no stylesheet or font
//! from the network: the file opens offline.

use std::fmt::Write;

use polars::prelude::*;

use crate::synthesis::Language;

/// Definitions shown in the methods section, one per table.
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "activity",
        "Patients whose first administration falls in the period (new initiations) and patients on treatment at any time during the period (started by its end, not ended before its start), by pathway, drug, ORPHA code, centre and region of the centre. A patient counts once per cell.",
    ),
    (
        "access_routes",
        "Patients on treatment during the period by drug, under a derogatory pathway (AAC, AAP, CPC, off-label, direct access, ATU, RTU) or under common law, and the share of each route for the drug.",
    ),
    (
        "requests",
        "Per-patient authorisations (AAC and nominative ATU), read from their history as known at the cutoff: requests submitted in the period, and grants, renewals and refusals decided in it, by pathway and drug.",
    ),
    (
        "timeliness",
        "Days, by pathway and drug, as number of episodes, median and quartiles (linear interpolation). Where a decision on the patient's request exists (per-patient authorisations: AAC, nominative ATU): from request to decision (decisions in the period) and from decision to first administration. For every pathway: from request to first administration (first administrations in the period). For framework pathways (early access, CPC, cohort ATU, RTU, direct access), whose patients need no decision of their own: from the framework's entry into force to its first patient's first administration, for the frameworks whose first patient (within the report's scope) started in the period.",
    ),
    (
        "discontinuations",
        "Episodes that ended in the period (stopped, switched, transferred, lost to follow-up, deceased), by pathway, drug, outcome and stop reason.",
    ),
    (
        "expiring_authorisations",
        "Per-patient authorisations in force at the end of the period (granted, renewed, renewal pending) whose validity ends within 30, 60 or 90 days after it; windows are cumulative.",
    ),
    (
        "expiring_frameworks",
        "Frameworks (AAP, CPC, cohort ATU...) in force at the end of the period whose validity ends within 30, 60 or 90 days after it (cumulative windows), with the patients on treatment at the end of the period in the cohorts each frames.",
    ),
    (
        "overdue_follow_ups",
        "Per centre, episodes on treatment at the end of the period in a cohort with a follow-up schedule, and those whose last visit (or first administration, with no visit yet) is older than the schedule plus 30 days of grace.",
    ),
    (
        "persistence",
        "Kaplan-Meier probability of still being on treatment 6, 12 and 24 months after the first administration, per cohort where the course began, with 95% confidence intervals from Greenwood's variance on the log(-log) scale, numbers still at risk, and the median time on treatment with its 95% interval (Brookmeyer-Crowley on the same scale). A course follows the patient on one drug: a change of pathway (AAC, then early access, then common law) or a transfer carried on at another centre within 60 days continues it. A stop, a change of drug and a death end it; a stop for transition to common law does not. Losses to follow-up and courses still going on are censored. Treatments given once (gene therapies) are no course.",
    ),
    (
        "persistence_drug",
        "The same courses and estimates as persistence, per drug (ATC code) rather than per cohort.",
    ),
    (
        "journey_pathways",
        "Time on each pathway, per drug: a stay is a course's consecutive episodes under one pathway (an AAC, then its early access, then common law make three stays). Kaplan-Meier probability of still being on the pathway 6, 12 and 24 months after the stay's first administration, with 95% intervals, numbers at risk, and the median time on the pathway with its interval. Leaving the pathway is the event, for the next pathway, a stop, a change of drug or a death; losses to follow-up and stays going on are censored.",
    ),
    (
        "journey_common_law",
        "Time from the first derogatory administration of a course of treatment to common law, per drug: the share of courses having reached common law 6, 12 and 24 months after it (Aalen-Johansen cumulative incidence, with a stop, a change of drug or a death before common law as a competing event), its 95% interval (delta method, log(-log) scale), numbers at risk, and the median time to common law once half the courses reached it. Courses going on, lost to follow-up or transferred with no continuation are censored.",
    ),
    (
        "switches",
        "Changes of treatment in the period: episodes declared as following an earlier one (dated by their first administration, or their request before it), classified as a change of drug, of pathway, of both, or a transition to common law (the same drug continuing under common law); and episodes stopped in the period for a transition to common law with no following episode. Patients count once per cell.",
    ),
    (
        "equity_regions",
        "Patients on treatment during the period per million inhabitants of their region of residence (rounded regional populations shipped with the software, to be replaced by the exact INSEE series).",
    ),
    (
        "equity_centre_types",
        "Patients on treatment during the period by type of centre; a patient followed at two types of centre counts in both.",
    ),
    (
        "equity_age_sex",
        "Patients on treatment during the period by sex and age band at the end of the period (age from the month of birth).",
    ),
    (
        "safety",
        "Adverse events with onset in the period, all and serious, by drug and MedDRA system organ class; exposure is the time on treatment inside the period, in patient-years; rates per 100 patient-years with exact (Garwood) Poisson 95% confidence intervals. Events with no code count as UNCODED.",
    ),
    (
        "safety_pt",
        "The safety table by MedDRA preferred term within its system organ class, with the same exposure, rates and intervals.",
    ),
    (
        "completeness",
        "Data quality per centre, over the episodes on treatment during the period, for the items the registry lets go missing: the patient's sex and region, the dosage; among episodes treated 90 days or more, a follow-up visit, and an efficacy assessment (improved, stable or worsened; a visit judging efficacy not assessable is no assessment); among episodes with adverse events, a known outcome and a MedDRA system organ class for each; among those with a serious one, its declaration to pharmacovigilance. Episodes concerned, complete, and the percentage. Late follow-up per centre is the overdue_follow_ups table.",
    ),
];

/// The definitions in French, table by table in the same order as [`DEFINITIONS`].
pub const DEFINITIONS_FR: &[(&str, &str)] = &[
    (
        "activity",
        "Patients dont la première administration tombe dans la période (initiations) et patients sous traitement à un moment de la période (traitement commencé avant sa fin, non terminé avant son début), par voie d'accès, médicament, code ORPHA, centre et région du centre. Un patient compte une fois par case.",
    ),
    (
        "access_routes",
        "Patients sous traitement pendant la période par médicament, par voie dérogatoire (AAC, AAP, CPC, hors AMM, accès direct, ATU, RTU) ou de droit commun, et la part de chaque voie pour le médicament.",
    ),
    (
        "requests",
        "Autorisations nominatives (AAC et ATU nominative), lues dans leur historique tel que connu à la date d'arrêt : demandes déposées dans la période, et octrois, renouvellements et refus décidés dans la période, par voie d'accès et médicament.",
    ),
    (
        "timeliness",
        "Délais en jours, par voie d'accès et médicament : nombre d'épisodes, médiane et quartiles (interpolation linéaire). Là où la demande du patient reçoit une décision (autorisations nominatives : AAC, ATU nominative) : de la demande à la décision (décisions de la période) et de la décision à la première administration. Pour toutes les voies : de la demande à la première administration (premières administrations de la période). Pour les voies à cadre (accès précoce, CPC, ATU de cohorte, RTU, accès direct), dont les patients n'ont pas de décision propre : de l'entrée en vigueur du cadre à la première administration de son premier patient, pour les cadres dont le premier patient (dans le périmètre du rapport) a commencé dans la période.",
    ),
    (
        "discontinuations",
        "Épisodes terminés dans la période (arrêt, changement, transfert, perdu de vue, décès), par voie d'accès, médicament, issue et motif d'arrêt.",
    ),
    (
        "expiring_authorisations",
        "Autorisations nominatives en vigueur à la fin de la période (octroyées, renouvelées, renouvellement en cours) dont la validité prend fin dans les 30, 60 ou 90 jours qui suivent ; les fenêtres sont cumulatives.",
    ),
    (
        "expiring_frameworks",
        "Cadres (AAP, CPC, ATU de cohorte...) en vigueur à la fin de la période dont la validité prend fin dans les 30, 60 ou 90 jours qui suivent (fenêtres cumulatives), avec les patients sous traitement à la fin de la période dans les cohortes que chacun encadre.",
    ),
    (
        "overdue_follow_ups",
        "Par centre, épisodes sous traitement à la fin de la période dans une cohorte qui a un calendrier de suivi, et ceux dont la dernière visite (ou la première administration, sans visite encore) est plus ancienne que le calendrier plus 30 jours de tolérance.",
    ),
    (
        "persistence",
        "Probabilité de Kaplan-Meier d'être encore sous traitement 6, 12 et 24 mois après la première administration, par cohorte où le traitement a commencé, avec les intervalles de confiance à 95 % de la variance de Greenwood sur l'échelle log(-log), les effectifs encore à risque, et la durée médiane de traitement avec son intervalle à 95 % (Brookmeyer-Crowley sur la même échelle). Un traitement suit le patient sur un médicament : un changement de voie (AAC, puis accès précoce, puis droit commun) ou un transfert poursuivi dans un autre centre dans les 60 jours le continue. Un arrêt, un changement de médicament et un décès le terminent ; un arrêt pour passage au droit commun, non. Les perdus de vue et les traitements en cours sont censurés. Les traitements administrés une seule fois (thérapies géniques) ne sont pas des traitements suivis.",
    ),
    (
        "persistence_drug",
        "Les mêmes traitements et estimations que persistence, par médicament (code ATC) plutôt que par cohorte.",
    ),
    (
        "journey_pathways",
        "Durée sur chaque voie d'accès, par médicament : un séjour regroupe les épisodes consécutifs d'un traitement sous une même voie (une AAC, puis son accès précoce, puis le droit commun font trois séjours). Probabilité de Kaplan-Meier d'être encore sur la voie 6, 12 et 24 mois après la première administration du séjour, avec les intervalles à 95 %, les effectifs à risque et la durée médiane sur la voie avec son intervalle. L'événement est la sortie de la voie, vers la voie suivante, par un arrêt, un changement de médicament ou un décès ; les perdus de vue et les séjours en cours sont censurés.",
    ),
    (
        "journey_common_law",
        "Délai entre la première administration dérogatoire d'un traitement et le droit commun, par médicament : la part des traitements passés au droit commun 6, 12 et 24 mois après (incidence cumulée d'Aalen-Johansen, un arrêt, un changement de médicament ou un décès avant le droit commun étant un événement concurrent), son intervalle à 95 % (méthode delta, échelle log(-log)), les effectifs à risque, et le délai médian jusqu'au droit commun une fois que la moitié des traitements l'a atteint. Les traitements en cours, perdus de vue ou transférés sans suite sont censurés.",
    ),
    (
        "switches",
        "Changements de traitement dans la période : épisodes déclarés à la suite d'un précédent (datés de leur première administration, ou de leur demande avant elle), classés en changement de médicament, de voie, des deux, ou passage au droit commun (le même médicament poursuivi en droit commun) ; et épisodes arrêtés dans la période pour passage au droit commun sans épisode suivant. Un patient compte une fois par case.",
    ),
    (
        "equity_regions",
        "Patients sous traitement pendant la période par million d'habitants de leur région de résidence (populations régionales arrondies livrées avec le logiciel, à remplacer par la série exacte de l'INSEE).",
    ),
    (
        "equity_centre_types",
        "Patients sous traitement pendant la période par type de centre ; un patient suivi dans deux types de centre compte dans les deux.",
    ),
    (
        "equity_age_sex",
        "Patients sous traitement pendant la période par sexe et classe d'âge à la fin de la période (âge calculé depuis le mois de naissance).",
    ),
    (
        "safety",
        "Événements indésirables débutant dans la période, tous et graves, par médicament et classe de systèmes d'organes MedDRA ; l'exposition est le temps sous traitement dans la période, en patients-années ; taux pour 100 patients-années avec intervalles de confiance de Poisson exacts (Garwood) à 95 %. Les événements sans code comptent en UNCODED.",
    ),
    (
        "safety_pt",
        "Le tableau safety par terme préféré MedDRA dans sa classe de systèmes d'organes, avec la même exposition, les mêmes taux et intervalles.",
    ),
    (
        "completeness",
        "Qualité des données par centre, sur les épisodes sous traitement pendant la période, pour les éléments que le registre laisse manquer : le sexe et la région du patient, la posologie ; parmi les épisodes traités 90 jours ou plus, une visite de suivi et une évaluation de l'efficacité (améliorée, stable ou aggravée ; une visite jugeant l'efficacité non évaluable n'est pas une évaluation) ; parmi les épisodes avec événements indésirables, une issue connue et une classe de systèmes d'organes MedDRA pour chacun ; parmi ceux avec un événement grave, sa déclaration à la pharmacovigilance. Épisodes concernés, complets, et pourcentage. Le retard de suivi par centre est le tableau overdue_follow_ups.",
    ),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A published value as a reader of `language` writes it: a decimal comma in French, and the
/// marks of masked counts in words of the language (`<10` reads the same).
fn localise(raw: &str, language: Language) -> String {
    match language {
        Language::En => raw.to_owned(),
        Language::Fr => match raw {
            "suppressed" => "masqué".to_owned(),
            "withheld" => "retenu".to_owned(),
            _ if raw.contains('.') && raw.parse::<f64>().is_ok() => raw.replace('.', ","),
            _ => raw.to_owned(),
        },
    }
}

fn cell(df: &DataFrame, column: &str, row: usize) -> String {
    df.column(column)
        .ok()
        .and_then(|c| c.get(row).ok().map(|v| v.str_value().to_string()))
        .map(|s| if s == "null" { String::new() } else { s })
        .unwrap_or_default()
}

/// A horizontal bar chart of `value` per `label`; masked or missing values are listed as such.
fn bar_chart(df: &DataFrame, label: &str, value: &str, title: &str, language: Language) -> String {
    let rows: Vec<(String, Option<f64>, String)> = (0..df.height())
        .map(|i| {
            let raw = cell(df, value, i);
            // A code's name when the table has one beside it (region_code, region_name).
            let named = label
                .strip_suffix("_code")
                .map(|stem| cell(df, &format!("{stem}_name"), i))
                .filter(|n| !n.is_empty());
            (
                named.unwrap_or_else(|| cell(df, label, i)),
                raw.parse::<f64>().ok(),
                raw,
            )
        })
        .collect();
    let max = rows
        .iter()
        .filter_map(|r| r.1)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let (bar_h, left, width) = (18, 190, 420);
    let height = rows.len() * (bar_h + 4) + 30;
    let mut svg = format!(
        r#"<figure><svg xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{height}" viewBox="0 0 {w} {height}"><title>{t}</title>"#,
        w = left + width + 90,
        t = escape(title)
    );
    for (i, (name, v, raw)) in rows.iter().enumerate() {
        let y = 10 + i * (bar_h + 4);
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text>"#,
            left - 6,
            y + 13,
            escape(name)
        );
        match v {
            Some(v) => {
                let w = (v / max * width as f64).round();
                let _ = write!(
                    svg,
                    r##"<rect x="{left}" y="{y}" width="{w}" height="{bar_h}" fill="#3b6ea5"/><text x="{}" y="{}" font-size="12">{}</text>"##,
                    left as f64 + w + 4.0,
                    y + 13,
                    escape(&localise(raw, language))
                );
            }
            None => {
                let _ = write!(
                    svg,
                    r##"<text x="{}" y="{}" font-size="12" fill="#777">{}</text>"##,
                    left + 4,
                    y + 13,
                    escape(&localise(raw, language))
                );
            }
        }
    }
    svg.push_str("</svg><figcaption>");
    svg.push_str(&escape(title));
    svg.push_str("</figcaption></figure>");
    svg
}

/// Persistence curves: survival at 0 and at each published horizon, one polyline per cohort.
fn persistence_chart(df: &DataFrame, group: &str, title: &str, caption: &str, language: Language) -> String {
    let mut cohorts: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for i in 0..df.height() {
        // A drug's name beside its code when the table has it (drug_atc, drug_name).
        let name = match group
            .strip_suffix("_atc")
            .map(|stem| cell(df, &format!("{stem}_name"), i))
        {
            Some(named) if !named.is_empty() => format!("{named} ({})", cell(df, group, i)),
            _ => cell(df, group, i),
        };
        let (Ok(months), Ok(s)) = (
            cell(df, "months", i).parse::<f64>(),
            cell(df, "survival", i).parse::<f64>(),
        ) else {
            continue;
        };
        match cohorts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push((months, s)),
            None => cohorts.push((name, vec![(0.0, 1.0), (months, s)])),
        }
    }
    let (left, top, w, h) = (50.0, 10.0, 460.0, 220.0);
    let x = |m: f64| left + m / 24.0 * w;
    let y = |s: f64| top + (1.0 - s) * h;
    let palette = [
        "#3b6ea5", "#c0504d", "#9bbb59", "#8064a2", "#4bacc6", "#f79646", "#2c4d75", "#772c2a",
    ];
    let mut svg = format!(
        r##"<figure><svg xmlns="http://www.w3.org/2000/svg" role="img" width="1000" height="{}" viewBox="0 0 1000 {}"><title>{}</title><line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#333"/>"##,
        h + 50.0,
        h + 50.0,
        escape(title),
        top + h,
        left + w,
        top + h,
        top + h
    );
    for m in [0.0, 6.0, 12.0, 24.0] {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{m}</text>"#,
            x(m),
            top + h + 15.0
        );
    }
    for s in [0.0, 0.5, 1.0] {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"#,
            left - 4.0,
            y(s) + 4.0,
            localise(&s.to_string(), language)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        left + w / 2.0,
        top + h + 32.0,
        match language {
            Language::Fr => "mois depuis la première administration",
            Language::En => "months since first administration",
        }
    );
    for (i, (name, points)) in cohorts.iter().enumerate() {
        let colour = palette[i % palette.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(m, s)| format!("{:.1},{:.1}", x(*m), y(*s)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let _ = write!(
            svg,
            r#"<rect x="530" y="{}" width="10" height="10" fill="{colour}"/><text x="545" y="{}" font-size="11">{}</text>"#,
            top + i as f64 * 16.0,
            top + 9.0 + i as f64 * 16.0,
            escape(name)
        );
    }
    svg.push_str("</svg><figcaption>");
    svg.push_str(&escape(caption));
    svg.push_str("</figcaption></figure>");
    svg
}

fn table_html(name: &str, df: &DataFrame, language: Language) -> String {
    let mut out = format!("<h3 id=\"{0}\">{0}</h3><table><thead><tr>", escape(name));
    for c in df.get_column_names() {
        let _ = write!(out, "<th>{}</th>", escape(c.as_str()));
    }
    out.push_str("</tr></thead><tbody>");
    let names: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
    for i in 0..df.height() {
        out.push_str("<tr>");
        for c in &names {
            let _ = write!(out, "<td>{}</td>", escape(&localise(&cell(df, c, i), language)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// Facts about the run shown at the top of the report.
#[derive(Debug, Clone)]
pub struct Header {
    pub title: String,
    pub period: String,
    pub as_of: String,
    pub snapshot_hash: String,
    pub threshold: u32,
    /// Masked counts that totals known from elsewhere would give away (see the suppression module).
    pub exposed_by_totals: u64,
    /// Counts withheld with no bound (see the suppression module).
    pub withheld: u64,
    pub code_version: String,
    /// The language of the page's words and numbers (tables keep their codes and column names).
    pub language: Language,
}

/// Renders the report from the published tables, in order, in the header's language.
pub fn render(header: &Header, tables: &[(String, DataFrame)]) -> String {
    let language = header.language;
    let fr = language == Language::Fr;
    let t = |en: &'static str, fr_text: &'static str| if fr { fr_text } else { en };
    let mut out = String::with_capacity(1 << 16);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0 2em;font-size:13px}}
th,td{{border:1px solid #ccc;padding:3px 6px;text-align:left}}th{{background:#eef2f7}}
figure{{margin:1em 0}}figcaption{{font-size:12px;color:#555}}dt{{font-weight:bold;margin-top:0.6em}}
</style></head><body><h1>{title}</h1>"#,
        lang = language.code(),
        title = escape(&header.title),
    );
    if fr {
        let _ = write!(
            out,
            "<p>Période <strong>{period}</strong> ; registre tel que connu au <strong>{as_of}</strong> ; instantané <code>{hash}</code> ; logiciel {version}. Les effectifs inférieurs à {threshold} sont affichés &lt;{threshold}.</p>",
            period = escape(&header.period),
            as_of = escape(&header.as_of),
            hash = escape(&header.snapshot_hash),
            version = escape(&header.code_version),
            threshold = header.threshold,
        );
    } else {
        let _ = write!(
            out,
            "<p>Period <strong>{period}</strong>; registry as known at <strong>{as_of}</strong>; snapshot <code>{hash}</code>; software {version}. Counts below {threshold} are shown as &lt;{threshold}.</p>",
            period = escape(&header.period),
            as_of = escape(&header.as_of),
            hash = escape(&header.snapshot_hash),
            version = escape(&header.code_version),
            threshold = header.threshold,
        );
    }
    let _ = write!(out, "<h2>{}</h2>", t("Charts", "Graphiques"));
    for (name, df) in tables {
        match name.as_str() {
            "equity_regions" => out.push_str(&bar_chart(
                df,
                "region_code",
                "per_million",
                t(
                    "Patients on treatment per million inhabitants, by region",
                    "Patients sous traitement par million d'habitants, par région",
                ),
                language,
            )),
            "equity_centre_types" => out.push_str(&bar_chart(
                df,
                "centre_type",
                "share_percent",
                t(
                    "Share of treated patients by type of centre (%)",
                    "Part des patients traités par type de centre (%)",
                ),
                language,
            )),
            "persistence" => out.push_str(&persistence_chart(
                df,
                "cohort",
                t("Persistence on treatment per cohort", "Maintien sous traitement par cohorte"),
                t(
                    "Kaplan-Meier persistence per cohort where the course began, at the published horizons (cohorts with masked estimates are left out)",
                    "Maintien sous traitement (Kaplan-Meier) par cohorte où le traitement a commencé, aux horizons publiés (les cohortes aux estimations masquées sont omises)",
                ),
                language,
            )),
            "persistence_drug" => out.push_str(&persistence_chart(
                df,
                "drug_atc",
                t("Persistence on treatment per drug", "Maintien sous traitement par médicament"),
                t(
                    "Kaplan-Meier persistence per drug, at the published horizons (drugs with masked estimates are left out)",
                    "Maintien sous traitement (Kaplan-Meier) par médicament, aux horizons publiés (les médicaments aux estimations masquées sont omis)",
                ),
                language,
            )),
            _ => {}
        }
    }
    let _ = write!(out, "<h2>{}</h2>", t("Tables", "Tableaux"));
    if fr {
        out.push_str(
            "<p>Les tableaux gardent les codes et noms de colonnes de leurs fichiers CSV et Parquet ; les nombres s'écrivent ici avec une virgule décimale.</p>",
        );
    }
    for (name, df) in tables {
        out.push_str(&table_html(name, df, language));
    }
    let _ = write!(out, "<h2>{}</h2><dl>", t("Methods", "Méthodes"));
    for (name, text) in if fr { DEFINITIONS_FR } else { DEFINITIONS } {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(name), escape(text));
    }
    let threshold = header.threshold;
    let below = threshold.saturating_sub(1);
    if fr {
        let _ = write!(
            out,
            "<dt>Petits effectifs</dt><dd>Tout effectif inférieur à {threshold} est publié &lt;{threshold}, jamais sa valeur ni 0. \
             D'autres effectifs, de {threshold} ou plus, sont masqués (masqué) jusqu'à ce qu'aucun effectif masqué ne puisse \
             être retrouvé par un lecteur qui connaîtrait aussi chaque total de ligne, de colonne et d'ensemble de chaque tableau \
             (chaque total sur une dimension à dimensions fixées, et le total du tableau) qui additionne deux cases ou plus et \
             n'est pas lui-même inférieur à {threshold} ; le tableau safety est lu comme les totaux du tableau safety_pt. Aucun \
             de ces totaux ne garde un seul effectif masqué sous lui, et chaque effectif masqué peut encore prendre deux valeurs \
             ou plus compatibles avec ces totaux et avec sa marque (0 à {below} pour &lt;{threshold}, {threshold} ou plus pour masqué), \
             ce que vérifie la programmation linéaire. Les valeurs calculées sur un effectif masqué (médianes, estimations de \
             survie, taux et leurs intervalles) sont masquées. Un petit effectif que les totaux connus fixeraient encore une fois \
             masqué (les marques elles-mêmes le bornent) est retenu, affiché retenu sans aucune borne, avec les effectifs des \
             totaux dont il relève, élargis jusqu'à ce qu'il puisse varier.{withheld}{exposed}</dd>\
             <dt>Données</dt><dd>Les enregistrements tels que le registre les connaissait à la date d'arrêt. Les patients \
             opposés à la réutilisation de leurs données sont exclus avec tous leurs enregistrements.</dd></dl></body></html>",
            withheld = if header.withheld > 0 {
                format!(" {} effectifs sont retenus dans ce rapport.", header.withheld)
            } else {
                String::new()
            },
            exposed = if header.exposed_by_totals > 0 {
                format!(
                    " {} petits effectifs pourraient encore être retrouvés à partir de ces seuls totaux, s'ils étaient connus \
                     par ailleurs, quoi que publie ce rapport : le manifeste les compte par tableau (exposed_by_totals).",
                    header.exposed_by_totals
                )
            } else {
                String::new()
            }
        );
        return out;
    }
    let _ = write!(
        out,
        "<dt>Small counts</dt><dd>Every count below {t} is published as &lt;{t}, never as its value or 0. \
         Further counts, of {t} or more, are masked as suppressed until no masked count can be worked out \
         by a reader who also knows every row, column and grand total of each table (every total over \
         one dimension with the others fixed, and the total of the table) that adds up two or more cells \
         and is not itself below {t}; the safety table is read as the totals of the safety table by \
         preferred term. No such total is left with a single masked count under it, and every masked \
         count can still take two values or more consistent with those totals and with what its mark \
         states (0 to {t1} for &lt;{t}, {t} or more for suppressed), as checked by linear programming. \
         Values computed over a masked count (medians, survival estimates, rates and their intervals) \
         are shown as suppressed. A small count that the known totals would still pin once masked \
         this way (the marks themselves bound it) is withheld, shown as withheld with no bound at all, \
         together with the counts of the totals it is under, widened until it can move.{withheld}{exposed}</dd>\
         <dt>Data</dt><dd>Records as the registry knew them at the cutoff. Patients who objected to the \
         reuse of their data are excluded with all their records.</dd></dl></body></html>",
        t = threshold,
        t1 = below,
        withheld = if header.withheld > 0 {
            format!(" {} counts are withheld in this report.", header.withheld)
        } else {
            String::new()
        },
        exposed = if header.exposed_by_totals > 0 {
            format!(
                " {} small counts could still be worked out from such totals alone, were they known from \
                 elsewhere, whatever this report publishes: the manifest lists them per table (exposed_by_totals).",
                header.exposed_by_totals
            )
        } else {
            String::new()
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_self_contained_and_escapes_its_content() {
        let regions = df!("region_code" => ["11", "94"], "treated_patients" => ["40", "<10"], "per_million" => ["3.2", "suppressed"]).unwrap();
        let persistence = df!(
            "cohort" => ["A <b>", "A <b>"], "months" => ["6", "12"], "survival" => ["0.9", "0.8"]
        )
        .unwrap();
        let header = Header {
            title: "Observatory report".into(),
            period: "2026-Q3".into(),
            as_of: "2026-11-01T00:00:00Z".into(),
            snapshot_hash: "abc".into(),
            threshold: 10,
            exposed_by_totals: 0,
            withheld: 0,
            code_version: "0.1.0".into(),
            language: Language::En,
        };
        let by_drug = df!(
            "drug_atc" => ["B02BX07", "B02BX07"], "drug_name" => ["concizumab", "concizumab"],
            "months" => ["6", "12"], "survival" => ["0.9", "0.8"]
        )
        .unwrap();
        let html = render(
            &header,
            &[
                ("equity_regions".into(), regions),
                ("persistence".into(), persistence),
                ("persistence_drug".into(), by_drug),
            ],
        );
        // Codes are shown with their names where the table has them.
        assert!(html.contains("concizumab (B02BX07)"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<svg") && html.contains("<polyline"));
        assert!(html.contains("A &lt;b&gt;") && !html.contains("A <b>"));
        // Nothing to fetch: the only URL is the SVG namespace, which is a name, not a request.
        assert!(!html.contains("https://") && !html.contains("src=") && !html.contains("href=\"http"));
        assert!(!html.contains("<script") && !html.contains("<link"));
        assert!(html.contains("&lt;10"));

        // In French: the words, the decimal comma and the marks; codes and column names stay.
        let french = render(
            &Header {
                language: Language::Fr,
                ..header.clone()
            },
            &[(
                "equity_regions".into(),
                df!("region_code" => ["11", "94"], "treated_patients" => ["40", "<10"], "per_million" => ["3.2", "suppressed"]).unwrap(),
            )],
        );
        assert!(
            french.contains("<html lang=\"fr\"") && french.contains("Méthodes") && french.contains("Petits effectifs")
        );
        assert!(
            french.contains("<td>3,2</td>") && french.contains("<td>masqué</td>") && french.contains("<td>&lt;10</td>")
        );
        assert!(french.contains("<th>per_million</th>") && !french.contains("<td>3.2</td>"));
    }

    #[test]
    fn every_table_is_defined_in_both_languages() {
        let en: Vec<&str> = DEFINITIONS.iter().map(|(n, _)| *n).collect();
        let fr: Vec<&str> = DEFINITIONS_FR.iter().map(|(n, _)| *n).collect();
        assert_eq!(en, fr);
    }
}
