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

/// Writes `tables` (name, published frame) to `path`; numbers are written as numbers, masked
/// and other text cells as text.
pub fn write(path: &Path, tables: &[(String, DataFrame)], as_of: DateTime<Utc>) -> Result<(), XlsxOutputError> {
    let mut workbook = Workbook::new();
    let created = ExcelDateTime::from_timestamp(as_of.timestamp())?;
    workbook.set_properties(
        &DocProperties::new()
            .set_title("Treatment access observatory report")
            .set_creation_datetime(&created),
    );
    let bold = Format::new().set_bold();
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
        write(&a, &[("equity_regions".into(), t.clone())], as_of).unwrap();
        write(&b, &[("equity_regions".into(), t)], as_of).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert!(bytes.starts_with(b"PK"), "an XLSX file is a zip archive");
        assert_eq!(bytes, std::fs::read(&b).unwrap());
    }
}
