//! An ATC list: a delimited text file (comma, semicolon or tab, as its header line shows) with a
//! header naming a code column (`atc_code`, `ATC code`, `code`...) and a name column
//! (`atc_name`, `ATC level name`, `name`, `libellé`...); fields may be double-quoted. The list
//! has no official machine-readable download, so the import names its source (`--source`).
//!
//! Only substance-level codes (7 characters, level 5) are drugs; the codes of levels 1 to 4 are
//! counted and skipped. A level-5 code that is malformed is an error.

use std::collections::BTreeMap;

use super::{FileError, InputFile, decode, numbered_lines, split_delimited as split};
use crate::catalogue::{Drug, Entry, EntryKind, ReleaseContent, Source};
use crate::codes::Atc;

const CODE_COLUMNS: [&str; 5] = ["atc_code", "atc code", "code atc", "atc", "code"];
const NAME_COLUMNS: [&str; 8] = [
    "atc_name",
    "atc level name",
    "name",
    "libellé",
    "libelle",
    "nom",
    "label",
    "substance",
];

/// What was read: the release, and how many higher-level codes were skipped.
#[derive(Debug)]
pub struct Parsed {
    pub content: ReleaseContent,
    pub skipped_levels: usize,
}

/// Reads an ATC list, recorded under `version`, `release_date` and the `source` it was taken
/// from.
pub fn parse(
    file: InputFile<'_>,
    source: &str,
    version: &str,
    release_date: Option<chrono::NaiveDate>,
) -> Result<Parsed, FileError> {
    if source.trim().is_empty() {
        return Err(FileError::new(file.name, None, "needs the list's source (--source)"));
    }
    let (text, _) = decode(file.bytes);
    let mut lines = numbered_lines(&text);
    let Some((header_line, header)) = lines.next() else {
        return Err(FileError::new(file.name, None, "is empty"));
    };
    let delimiter = [';', '\t', ',']
        .into_iter()
        .max_by_key(|d| header.matches(*d).count())
        .filter(|d| header.contains(*d))
        .ok_or_else(|| {
            FileError::new(
                file.name,
                Some(header_line),
                "header has no delimiter (comma, semicolon or tab)",
            )
        })?;
    let names = split(header, delimiter).map_err(|m| FileError::new(file.name, Some(header_line), m))?;
    let find = |wanted: &[&str]| {
        wanted
            .iter()
            .find_map(|w| names.iter().position(|n| n.to_lowercase() == *w))
    };
    let code_col = find(&CODE_COLUMNS).ok_or_else(|| {
        FileError::new(
            file.name,
            Some(header_line),
            format!("header names no code column (one of {CODE_COLUMNS:?})"),
        )
    })?;
    let name_col = find(&NAME_COLUMNS).ok_or_else(|| {
        FileError::new(
            file.name,
            Some(header_line),
            format!("header names no name column (one of {NAME_COLUMNS:?})"),
        )
    })?;

    let mut entries = BTreeMap::new();
    let mut skipped_levels = 0;
    for (n, line) in lines {
        let fields = split(line, delimiter).map_err(|m| FileError::new(file.name, Some(n), m))?;
        if fields.len() != names.len() {
            return Err(FileError::new(
                file.name,
                Some(n),
                format!("has {} fields, the header {}", fields.len(), names.len()),
            ));
        }
        let code = fields[code_col].as_str();
        let name = fields[name_col].as_str();
        if matches!(code.len(), 1 | 3 | 4 | 5) && code.bytes().next().is_some_and(|b| b.is_ascii_uppercase()) {
            // Levels 1 (A), 2 (A10), 3 (A10A), 4 (A10AB).
            skipped_levels += 1;
            continue;
        }
        let atc = Atc::parse(code)
            .map_err(|e| FileError::new(file.name, Some(n), format!("ATC code {code:?} {}", e.description)))?;
        if name.is_empty() {
            return Err(FileError::new(file.name, Some(n), format!("ATC {code} has no name")));
        }
        let drug = Drug {
            name: name.to_owned(),
            brand: String::new(),
            cis: None,
            followed: false,
            single_administration: false,
            confirmed: true,
            retired: false,
        };
        if entries
            .insert((EntryKind::Drug, atc.as_str().to_owned()), Entry::Drug(drug))
            .is_some()
        {
            return Err(FileError::new(file.name, Some(n), format!("ATC {code} appears twice")));
        }
    }
    if entries.is_empty() {
        return Err(FileError::new(
            file.name,
            None,
            "lists no substance-level (7-character) code",
        ));
    }
    Ok(Parsed {
        content: ReleaseContent {
            source: Source::Atc,
            version: format!("{version} ({})", source.trim()),
            release_date,
            files: vec![file.record()],
            entries,
        },
        skipped_levels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../../../tests/fixtures/reference/atc/atc.csv");

    fn input(bytes: &[u8]) -> InputFile<'_> {
        InputFile { name: "atc.csv", bytes }
    }

    #[test]
    fn reads_substance_level_codes_and_skips_the_groups() {
        let p = parse(input(FIXTURE), "WHO ATC/DDD Index", "2026", None).expect("fixture parses");
        assert_eq!(p.content.version, "2026 (WHO ATC/DDD Index)");
        assert_eq!(p.skipped_levels, 8);
        match p.content.entries.get(&(EntryKind::Drug, "B02BX06".to_owned())) {
            Some(Entry::Drug(d)) => assert_eq!(d.name, "emicizumab"),
            other => panic!("{other:?}"),
        }
        match p.content.entries.get(&(EntryKind::Drug, "J06BA02".to_owned())) {
            Some(Entry::Drug(d)) => assert_eq!(d.name, "immunoglobulins, normal human, for intravascular adm."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn semicolons_and_quotes_are_understood() {
        let text = "Code ATC;Libellé\nB02BX06;\"émicizumab; anticorps\"\nB02BX;AUTRES HEMOSTATIQUES\n";
        let p = parse(input(text.as_bytes()), "ANSM", "1", None).expect("parses");
        match p.content.entries.get(&(EntryKind::Drug, "B02BX06".to_owned())) {
            Some(Entry::Drug(d)) => assert_eq!(d.name, "émicizumab; anticorps"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let text = std::str::from_utf8(FIXTURE).expect("utf-8");
        let bad = text.replacen("B02BX06", "B02BXX6", 1);
        let e = parse(input(bad.as_bytes()), "WHO", "1", None).expect_err("bad code");
        let line = text.lines().position(|l| l.starts_with("B02BX06")).expect("in fixture") + 1;
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.message.contains("ATC code \"B02BXX6\""), "{e}");
        let short = text.replacen("B02BX06,", "B02BX06", 1);
        assert!(
            parse(input(short.as_bytes()), "WHO", "1", None)
                .expect_err("fields")
                .message
                .contains("fields")
        );
        assert!(
            parse(input(b"x,y\n"), "WHO", "1", None)
                .expect_err("header")
                .message
                .contains("code column")
        );
        assert!(
            parse(input(FIXTURE), " ", "1", None)
                .expect_err("source")
                .message
                .contains("--source")
        );
    }
}
