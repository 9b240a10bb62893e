//! MedDRA, from a licensee's own distribution: the `$`-delimited ASCII files of the `MedAscii`
//! folder. MedDRA is licensed by the ICH MSSO: no MedDRA file ships with the observatory, an
//! organisation imports its own.
//!
//! - `soc.asc`: `soc_code$soc_name$soc_abbrev$...`
//! - `pt.asc`: `pt_code$pt_name$null_field$pt_soc_code$...`
//! - `llt.asc`: `llt_code$llt_name$pt_code$` five legacy codes `$llt_currency$...` (currency `Y`
//!   or `N`, in the tenth field)
//! - `mdhier.asc`: `pt_code$hlt_code$hlgt_code$soc_code$pt_name$hlt_name$hlgt_name$soc_name$
//!   soc_abbrev$null_field$pt_soc_code$primary_soc_fg$`: a PT's primary SOC is the row flagged `Y`
//! - `meddra_release.asc` (optional): `version$language$...`, the release's version.
//!
//! Codes are 8 digits; an LLT must name a PT of `pt.asc`, a PT a SOC of `soc.asc`.

use std::collections::{BTreeMap, BTreeSet};

use super::{FileError, InputFile, decode, numbered_lines};
use crate::catalogue::{Entry, EntryKind, MeddraTerm, ReleaseContent, Source};

/// The files of a distribution.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    pub soc: InputFile<'a>,
    pub pt: InputFile<'a>,
    pub llt: InputFile<'a>,
    pub mdhier: InputFile<'a>,
    pub release: Option<InputFile<'a>>,
}

fn fields<'t>(file: &str, n: usize, line: &'t str, at_least: usize) -> Result<Vec<&'t str>, FileError> {
    let line = line.strip_suffix('$').unwrap_or(line);
    let f: Vec<&str> = line.split('$').map(str::trim).collect();
    if f.len() < at_least {
        return Err(FileError::new(
            file,
            Some(n),
            format!("has {} $-separated fields, expected at least {at_least}", f.len()),
        ));
    }
    Ok(f)
}

fn code(file: &str, n: usize, what: &str, raw: &str) -> Result<String, FileError> {
    if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(FileError::new(
            file,
            Some(n),
            format!("{what} {raw:?} is not an 8-digit MedDRA code"),
        ))
    }
}

fn named(file: &str, n: usize, code: &str, name: &str) -> Result<String, FileError> {
    if name.is_empty() {
        Err(FileError::new(file, Some(n), format!("term {code} has no name")))
    } else {
        Ok(name.to_owned())
    }
}

/// Reads a distribution; `version` overrides the one of `meddra_release.asc`, and is required
/// when that file is absent.
pub fn parse(files: Files<'_>, version: Option<&str>) -> Result<ReleaseContent, FileError> {
    let version = match (version, files.release) {
        (Some(v), _) if !v.trim().is_empty() => v.trim().to_owned(),
        (_, Some(f)) => {
            let (text, _) = decode(f.bytes);
            let (n, line) = numbered_lines(&text)
                .next()
                .ok_or_else(|| FileError::new(f.name, None, "is empty"))?;
            let v = fields(f.name, n, line, 2)?;
            format!("{} {}", v[0], v[1])
        }
        _ => {
            return Err(FileError::new(
                files.soc.name,
                None,
                "the release's version is unknown: give --version, or meddra_release.asc",
            ));
        }
    };
    let mut entries = BTreeMap::new();
    let mut insert = |file: &str, n: usize, kind: EntryKind, code: String, term: MeddraTerm| {
        if entries.insert((kind, code.clone()), Entry::Meddra(term)).is_some() {
            Err(FileError::new(
                file,
                Some(n),
                format!("{} {code} appears twice", kind.code()),
            ))
        } else {
            Ok(())
        }
    };

    let f = files.soc;
    let (text, _) = decode(f.bytes);
    let mut socs = BTreeSet::new();
    for (n, line) in numbered_lines(&text) {
        let x = fields(f.name, n, line, 2)?;
        let c = code(f.name, n, "soc_code", x[0])?;
        let name = named(f.name, n, &c, x[1])?;
        socs.insert(c.clone());
        insert(
            f.name,
            n,
            EntryKind::MeddraSoc,
            c,
            MeddraTerm {
                name,
                parent: None,
                current: true,
                retired: false,
            },
        )?;
    }

    let f = files.mdhier;
    let (text, _) = decode(f.bytes);
    let mut primary_soc: BTreeMap<String, String> = BTreeMap::new();
    for (n, line) in numbered_lines(&text) {
        let x = fields(f.name, n, line, 12)?;
        let pt = code(f.name, n, "pt_code", x[0])?;
        let soc = code(f.name, n, "soc_code", x[3])?;
        match x[11] {
            "Y" => {
                if !socs.contains(&soc) {
                    return Err(FileError::new(
                        f.name,
                        Some(n),
                        format!("SOC {soc} is not in {}", files.soc.name),
                    ));
                }
                primary_soc.insert(pt, soc);
            }
            "N" => {}
            other => {
                return Err(FileError::new(
                    f.name,
                    Some(n),
                    format!("primary_soc_fg {other:?} is neither Y nor N"),
                ));
            }
        }
    }

    let f = files.pt;
    let (text, _) = decode(f.bytes);
    let mut pts = BTreeSet::new();
    for (n, line) in numbered_lines(&text) {
        let x = fields(f.name, n, line, 4)?;
        let c = code(f.name, n, "pt_code", x[0])?;
        let name = named(f.name, n, &c, x[1])?;
        let soc = match primary_soc.get(&c) {
            Some(s) => s.clone(),
            None => code(f.name, n, "pt_soc_code", x[3])?,
        };
        if !socs.contains(&soc) {
            return Err(FileError::new(
                f.name,
                Some(n),
                format!("SOC {soc} is not in {}", files.soc.name),
            ));
        }
        pts.insert(c.clone());
        insert(
            f.name,
            n,
            EntryKind::MeddraPt,
            c,
            MeddraTerm {
                name,
                parent: Some(soc),
                current: true,
                retired: false,
            },
        )?;
    }

    let f = files.llt;
    let (text, _) = decode(f.bytes);
    for (n, line) in numbered_lines(&text) {
        let x = fields(f.name, n, line, 10)?;
        let c = code(f.name, n, "llt_code", x[0])?;
        let name = named(f.name, n, &c, x[1])?;
        let pt = code(f.name, n, "pt_code", x[2])?;
        if !pts.contains(&pt) {
            return Err(FileError::new(
                f.name,
                Some(n),
                format!("PT {pt} is not in {}", files.pt.name),
            ));
        }
        let current = match x[9] {
            "Y" => true,
            "N" => false,
            other => {
                return Err(FileError::new(
                    f.name,
                    Some(n),
                    format!("llt_currency {other:?} is neither Y nor N"),
                ));
            }
        };
        insert(
            f.name,
            n,
            EntryKind::MeddraLlt,
            c,
            MeddraTerm {
                name,
                parent: Some(pt),
                current,
                retired: false,
            },
        )?;
    }
    if pts.is_empty() {
        return Err(FileError::new(files.pt.name, None, "lists no preferred term"));
    }

    let mut recorded = vec![
        files.soc.record(),
        files.pt.record(),
        files.llt.record(),
        files.mdhier.record(),
    ];
    recorded.extend(files.release.map(|f| f.record()));
    Ok(ReleaseContent {
        source: Source::Meddra,
        version,
        release_date: None,
        files: recorded,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            InputFile {
                name: $name,
                bytes: include_bytes!(concat!("../../../../tests/fixtures/reference/meddra/", $name)),
            }
        };
    }

    fn files() -> Files<'static> {
        Files {
            soc: fixture!("soc.asc"),
            pt: fixture!("pt.asc"),
            llt: fixture!("llt.asc"),
            mdhier: fixture!("mdhier.asc"),
            release: Some(fixture!("meddra_release.asc")),
        }
    }

    fn term(r: &ReleaseContent, kind: EntryKind, code: &str) -> MeddraTerm {
        match r.entries.get(&(kind, code.to_owned())) {
            Some(Entry::Meddra(t)) => t.clone(),
            other => panic!("{code}: {other:?}"),
        }
    }

    #[test]
    fn reads_the_hierarchy_with_primary_socs_and_currency() {
        let r = parse(files(), None).expect("fixture parses");
        assert_eq!(r.version, "99.0 English");
        assert_eq!(r.files.len(), 5);
        // The PT sits under two SOCs in mdhier.asc; the primary one is kept.
        assert_eq!(
            term(&r, EntryKind::MeddraPt, "90000101").parent.as_deref(),
            Some("90000002")
        );
        let llt = term(&r, EntryKind::MeddraLlt, "90001002");
        assert_eq!(llt.parent.as_deref(), Some("90000101"));
        assert!(!llt.current);
        assert_eq!(
            parse(files(), Some("27.1 French")).expect("override").version,
            "27.1 French"
        );
    }

    #[test]
    fn malformed_lines_name_their_file_and_line() {
        let llt = std::str::from_utf8(files().llt.bytes).expect("ascii");
        let cases = [
            (llt.replacen("90001002", "9000100X", 1), "is not an 8-digit MedDRA code"),
            (llt.replacen("$N$", "$Q$", 1), "neither Y nor N"),
            (llt.replacen("90000101", "90009999", 1), "PT 90009999 is not in pt.asc"),
        ];
        for (bad, message) in cases {
            let f = Files {
                llt: InputFile {
                    name: "llt.asc",
                    bytes: bad.as_bytes(),
                },
                ..files()
            };
            let e = parse(f, None).expect_err(message);
            assert_eq!(e.file, "llt.asc");
            assert!(e.line.is_some() && e.message.contains(message), "{e}");
        }
        let without_version = Files {
            release: None,
            ..files()
        };
        assert!(
            parse(without_version, None)
                .expect_err("version")
                .message
                .contains("--version")
        );
    }
}
