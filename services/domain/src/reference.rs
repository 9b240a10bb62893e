//! Reference lists shipped in `services/domain/reference/`, embedded at compile
//! time (no IO at run time). Each file opens with `#` lines giving its source and version, then a
//! header row, then plain comma-separated rows without quoting.

use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiseaseRef {
    pub orpha_code: &'static str,
    pub name: &'static str,
    pub icd10: &'static str,
    pub filiere: &'static str,
    pub confirmed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrugRef {
    pub atc: &'static str,
    pub inn: &'static str,
    pub brand: &'static str,
    pub cis: Option<&'static str>,
    pub confirmed: bool,
    /// A one-shot treatment (a gene therapy): one administration, then long-term follow-up.
    pub single_administration: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeasureRef {
    pub code: &'static str,
    pub description: &'static str,
    pub min: f64,
    pub max: f64,
}

/// A framework row as shipped; the store loads these as version 1 of framework records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameworkRef {
    pub id: &'static str,
    pub pathway: &'static str,
    pub drug_atc: &'static str,
    pub indication: &'static str,
    pub orpha_codes: Vec<&'static str>,
    pub authority: &'static str,
    pub decision_reference: &'static str,
    pub valid_from: &'static str,
    pub valid_to: &'static str,
    pub status: &'static str,
    pub protocol_type: &'static str,
    pub protocol_version: &'static str,
    pub follow_up_months: u32,
    pub confirmed: bool,
    pub requires_national_rcp: bool,
    /// Months between two periodic synthesis reports (0: none set).
    pub synthesis_months: u32,
}

pub const DISEASES_CSV: &str = include_str!("../reference/diseases.csv");
pub const DRUGS_CSV: &str = include_str!("../reference/drugs.csv");
pub const FRAMEWORKS_CSV: &str = include_str!("../reference/frameworks.csv");
pub const FILIERES_CSV: &str = include_str!("../reference/filieres.csv");
pub const REGIONS_CSV: &str = include_str!("../reference/regions.csv");
pub const MEASURES_CSV: &str = include_str!("../reference/measures.csv");

/// Data rows of a shipped CSV: comment lines and the header skipped, fields split on commas.
fn rows(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .skip(1)
        .map(|l| l.split(',').map(str::trim).collect())
}

/// The `# source:` line of a shipped file, for display.
pub fn source_of(text: &'static str) -> &'static str {
    text.lines()
        .find_map(|l| l.strip_prefix("# source:"))
        .map(str::trim)
        .unwrap_or("")
}

fn field(row: &[&'static str], i: usize) -> &'static str {
    row.get(i).copied().unwrap_or("")
}

pub static DISEASES: LazyLock<Vec<DiseaseRef>> = LazyLock::new(|| {
    rows(DISEASES_CSV)
        .map(|r| DiseaseRef {
            orpha_code: field(&r, 0),
            name: field(&r, 1),
            icd10: field(&r, 2),
            filiere: field(&r, 3),
            confirmed: field(&r, 4) == "true",
        })
        .collect()
});

pub static DRUGS: LazyLock<Vec<DrugRef>> = LazyLock::new(|| {
    rows(DRUGS_CSV)
        .map(|r| DrugRef {
            atc: field(&r, 0),
            inn: field(&r, 1),
            brand: field(&r, 2),
            cis: Some(field(&r, 3)).filter(|s| !s.is_empty()),
            confirmed: field(&r, 4) == "true",
            single_administration: field(&r, 5) == "true",
        })
        .collect()
});

pub static FRAMEWORKS: LazyLock<Vec<FrameworkRef>> = LazyLock::new(|| {
    rows(FRAMEWORKS_CSV)
        .map(|r| FrameworkRef {
            id: field(&r, 0),
            pathway: field(&r, 1),
            drug_atc: field(&r, 2),
            indication: field(&r, 3),
            orpha_codes: field(&r, 4).split('|').filter(|s| !s.is_empty()).collect(),
            authority: field(&r, 5),
            decision_reference: field(&r, 6),
            valid_from: field(&r, 7),
            valid_to: field(&r, 8),
            status: field(&r, 9),
            protocol_type: field(&r, 10),
            protocol_version: field(&r, 11),
            follow_up_months: field(&r, 12).parse().unwrap_or(0),
            confirmed: field(&r, 13) == "true",
            requires_national_rcp: field(&r, 14) == "true",
            synthesis_months: field(&r, 15).parse().unwrap_or(0),
        })
        .collect()
});

static FILIERES: LazyLock<Vec<(&'static str, &'static str)>> =
    LazyLock::new(|| rows(FILIERES_CSV).map(|r| (field(&r, 0), field(&r, 1))).collect());

static REGIONS: LazyLock<Vec<(&'static str, &'static str)>> =
    LazyLock::new(|| rows(REGIONS_CSV).map(|r| (field(&r, 0), field(&r, 1))).collect());

static MEASURES: LazyLock<Vec<MeasureRef>> = LazyLock::new(|| {
    rows(MEASURES_CSV)
        .map(|r| MeasureRef {
            code: field(&r, 0),
            description: field(&r, 1),
            min: field(&r, 2).parse().unwrap_or(f64::NEG_INFINITY),
            max: field(&r, 3).parse().unwrap_or(f64::INFINITY),
        })
        .collect()
});

pub fn disease(orpha_code: &str) -> Option<&'static DiseaseRef> {
    DISEASES.iter().find(|d| d.orpha_code == orpha_code)
}

pub fn drug(atc: &str) -> Option<&'static DrugRef> {
    DRUGS.iter().find(|d| d.atc == atc)
}

pub fn filiere(code: &str) -> Option<&'static str> {
    FILIERES.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

pub fn region(code: &str) -> Option<&'static str> {
    REGIONS.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

pub fn measure(code: &str) -> Option<&'static MeasureRef> {
    MEASURES.iter().find(|m| m.code == code)
}

/// The follow-up measures a visit records for a disease (by ORPHA code): the scales its
/// protocols follow. Empty for a disease with none in the shipped list.
pub fn measures_for_disease(orpha_code: &str) -> &'static [&'static str] {
    match orpha_code {
        "98878" | "98879" | "903" | "849" => &["ABR", "AJBR", "FACTOR_LEVEL_PCT", "INHIBITOR_TITRE_BU"],
        "70" => &["HFMSE", "RULM", "CHOP_INTEND"],
        "98896" | "98895" => &["SIX_MINUTE_WALK_M"],
        "589" => &["MG_ADL", "QMG"],
        "2932" => &["INCAT"],
        _ => &[],
    }
}

pub fn filieres() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILIERES.iter().copied()
}

pub fn regions() -> impl Iterator<Item = (&'static str, &'static str)> {
    REGIONS.iter().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column_counts_are_uniform(text: &'static str) {
        let header = text
            .lines()
            .find(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap_or_default();
        let n = header.split(',').count();
        for row in rows(text) {
            assert_eq!(row.len(), n, "row {row:?} does not have {n} columns");
        }
    }

    #[test]
    fn shipped_files_are_well_formed_and_sourced() {
        for text in [
            DISEASES_CSV,
            DRUGS_CSV,
            FRAMEWORKS_CSV,
            FILIERES_CSV,
            REGIONS_CSV,
            MEASURES_CSV,
        ] {
            column_counts_are_uniform(text);
            assert!(!source_of(text).is_empty(), "a shipped file has no source line");
            assert!(text.contains("# version:"), "a shipped file has no version line");
        }
        assert_eq!(FILIERES.len(), 23);
        assert_eq!(REGIONS.len(), 18);
    }

    #[test]
    fn every_disease_measure_is_in_the_measure_list() {
        for d in DISEASES.iter() {
            for code in measures_for_disease(d.orpha_code) {
                assert!(
                    measure(code).is_some(),
                    "{code} of ORPHA {} is not a measure",
                    d.orpha_code
                );
            }
        }
    }

    #[test]
    fn worked_examples_are_present() {
        assert_eq!(disease("98878").map(|d| d.filiere), Some("MHEMO"));
        assert_eq!(disease("70").map(|d| d.filiere), Some("FILNEMUS"));
        assert_eq!(drug("B02BX06").map(|d| d.inn), Some("emicizumab"));
        assert!(FRAMEWORKS.iter().any(|f| f.drug_atc == "B02BX06" && f.pathway == "CPC"));
        for f in FRAMEWORKS.iter() {
            assert!(drug(f.drug_atc).is_some(), "framework {} names an unknown drug", f.id);
            for code in &f.orpha_codes {
                assert!(disease(code).is_some(), "framework {} names unknown ORPHA {code}", f.id);
            }
        }
    }
}
