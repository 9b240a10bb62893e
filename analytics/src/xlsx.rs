//! The XLSX workbook: one sheet per published table, as published (masked cells as text).
//! The document's creation time is the snapshot's cutoff, so the same snapshot gives the same
//! workbook.

use std::path::Path;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, XlsxError};

#[derive(Debug, thiserror::Error)]
pub enum XlsxOutputError {
    #[error(transparent)]
    Xlsx(#[from] XlsxError),
    #[error(transparent)]
    Polars(#[from] PolarsError),
}

/// What the first sheet of a workbook says, in the run's language: the workbook's title, and each
/// table's title and definition, by its sheet name.
pub struct Readme<'a> {
    pub language: crate::synthesis::Language,
    pub title: &'a str,
    pub tables: Vec<(&'a str, &'a str, &'a str)>,
}

/// Writes `tables` (name, published frame) to `path`, after a first sheet that describes them
/// in the run's language (`readme`); numbers are written as numbers (the spreadsheet shows them
/// in its own locale), masked and other text cells as text; sheet names and column headers are
/// the tables' codes, as in the CSV and Parquet files.
pub fn write(
    path: &Path,
    tables: &[(String, DataFrame)],
    as_of: DateTime<Utc>,
    readme: &Readme<'_>,
) -> Result<(), XlsxOutputError> {
    use crate::synthesis::Language;
    let mut workbook = Workbook::new();
    let created = ExcelDateTime::from_timestamp(as_of.timestamp())?;
    workbook.set_properties(
        &DocProperties::new()
            .set_title(readme.title)
            .set_creation_datetime(&created),
    );
    let bold = Format::new().set_bold();
    let wrapped = Format::new().set_text_wrap();
    let fr = readme.language == Language::Fr;
    let first = workbook.add_worksheet();
    first.set_name(if fr { "Lisez-moi" } else { "Read me" })?;
    first.write_string_with_format(0, 0, readme.title, &bold)?;
    first.write_string(
        1,
        0,
        if fr {
            "Une feuille par tableau, nommée par son code ; les colonnes gardent les codes des fichiers CSV et Parquet. Les effectifs masqués se lisent <10 (moins que le seuil), suppressed (masqué pour protéger un petit effectif) ou withheld (retenu sans borne)."
        } else {
            "One sheet per table, named by its code; columns keep the codes of the CSV and Parquet files. Masked counts read <10 (below the threshold), suppressed (masked to protect a small count) or withheld (held back with no bound)."
        },
    )?;
    for (c, heading) in (if fr {
        ["Feuille", "Tableau", "Définition"]
    } else {
        ["Sheet", "Table", "Definition"]
    })
    .iter()
    .enumerate()
    {
        first.write_string_with_format(3, u16::try_from(c).unwrap_or(0), *heading, &bold)?;
    }
    for (i, (sheet, title, definition)) in readme.tables.iter().enumerate() {
        let row = u32::try_from(i + 4).unwrap_or(u32::MAX);
        first.write_string(row, 0, *sheet)?;
        first.write_string(row, 1, *title)?;
        first.write_string_with_format(row, 2, *definition, &wrapped)?;
    }
    first.set_column_width(0, 28)?;
    first.set_column_width(1, 40)?;
    first.set_column_width(2, 100)?;
    for (name, df) in tables {
        let sheet = workbook.add_worksheet();
        // Sheet names are at most 31 characters.
        sheet.set_name(name.chars().take(31).collect::<String>())?;
        for (c, column) in df.columns().iter().enumerate() {
            let c = u16::try_from(c).unwrap_or(u16::MAX);
            sheet.write_string_with_format(0, c, column.name().as_str(), &bold)?;
            let text = column.cast(&DataType::String)?;
            let text = text.str()?;
            for r in 0..text.len() {
                let row = u32::try_from(r + 1).unwrap_or(u32::MAX);
                let Some(v) = text.get(r) else { continue };
                match v.parse::<f64>() {
                    Ok(n) if !is_code(column.name().as_str()) => {
                        sheet.write_number(row, c, n)?;
                    }
                    _ => {
                        sheet.write_string(row, c, v)?;
                    }
                }
            }
        }
        sheet.set_freeze_panes(1, 0)?;
        sheet.autofit();
    }
    workbook.save(path)?;
    Ok(())
}

/// Columns holding codes that look like numbers but must stay text (leading zeros, identifiers).
fn is_code(column: &str) -> bool {
    matches!(
        column,
        "region_code" | "orpha_code" | "centre_finess" | "meddra_soc_code" | "meddra_pt_code" | "drug_atc" | "cohort"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tables_and_cutoff_give_the_same_workbook() {
        let dir = tempfile::tempdir().unwrap();
        let t = df!("region_code" => ["01", "11"], "treated_patients" => ["<10", "42"]).unwrap();
        let as_of = DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (a, b) = (dir.path().join("a.xlsx"), dir.path().join("b.xlsx"));
        let readme = Readme {
            language: crate::synthesis::Language::Fr,
            title: "Rapport",
            tables: vec![("equity_regions", "equity_regions", "Patients par million d'habitants")],
        };
        write(&a, &[("equity_regions".into(), t.clone())], as_of, &readme).unwrap();
        write(&b, &[("equity_regions".into(), t)], as_of, &readme).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert!(bytes.starts_with(b"PK"), "an XLSX file is a zip archive");
        assert_eq!(bytes, std::fs::read(&b).unwrap());
        // The first sheet describes the tables in the run's language.
        let mut zip = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut book = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("xl/workbook.xml").unwrap(), &mut book).unwrap();
        let first = book.find("Lisez-moi").expect("a read-me sheet");
        assert!(
            first < book.find("equity_regions").expect("the table's sheet"),
            "{book}"
        );
        let mut strings = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("xl/sharedStrings.xml").unwrap(), &mut strings).unwrap();
        assert!(strings.contains("Patients par million d"), "{strings}");
    }
}
