//! The French public drug database (base de données publique des médicaments, BDPM), as the
//! ANSM publishes it: tab-separated files without a header, dates as dd/mm/yyyy, in UTF-8 or
//! Windows-1252 depending on the release (detected per file).
//!
//! - `CIS_bdpm.txt`, one speciality per line: CIS code, name, pharmaceutical form, routes
//!   (`;`-separated), authorisation status, procedure, marketing state, authorisation date,
//!   BDM status, European authorisation number, holders (`;`-separated), enhanced monitoring.
//! - `CIS_CIP_bdpm.txt`, one presentation per line: CIS, CIP7, label, status, marketing
//!   declaration, its date, CIP13, then reimbursement columns (not kept).
//! - `CIS_COMPO_bdpm.txt`, one component per line: CIS, element, substance code, substance
//!   name, dosage, dosage reference, nature (`SA` active substance, `FT` therapeutic fraction),
//!   link number.
//!
//! A presentation or component naming a CIS code `CIS_bdpm.txt` lacks is an error: the three
//! files of one release agree.

use std::collections::BTreeMap;

use super::{Encoding, FileError, InputFile, decode, french_date, numbered_lines};
use crate::catalogue::{Entry, EntryKind, Presentation, ReleaseContent, Source, Speciality, Substance};

/// The three files of a release.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    pub specialities: InputFile<'a>,
    pub presentations: InputFile<'a>,
    pub compositions: InputFile<'a>,
}

/// What was read, and in which encoding each file was.
#[derive(Debug)]
pub struct Parsed {
    pub content: ReleaseContent,
    pub encodings: Vec<(String, Encoding)>,
}

fn cis(file: &str, line: usize, raw: &str) -> Result<String, FileError> {
    let raw = raw.trim();
    if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(FileError::new(
            file,
            Some(line),
            format!("CIS code {raw:?} is not 8 digits"),
        ))
    }
}

fn columns<'t>(file: &str, line: usize, text: &'t str, at_least: usize) -> Result<Vec<&'t str>, FileError> {
    let cols: Vec<&str> = text.split('\t').map(str::trim).collect();
    if cols.len() < at_least {
        return Err(FileError::new(
            file,
            Some(line),
            format!("has {} tab-separated columns, expected at least {at_least}", cols.len()),
        ));
    }
    Ok(cols)
}

/// The speciality a presentation or component names: one of `CIS_bdpm.txt`'s.
fn speciality_of<'s>(
    specialities: &'s mut BTreeMap<String, Speciality>,
    code: &str,
    file: &str,
    line: usize,
    specialities_file: &str,
) -> Result<&'s mut Speciality, FileError> {
    specialities
        .get_mut(code)
        .ok_or_else(|| FileError::new(file, Some(line), format!("CIS {code} is not in {specialities_file}")))
}

fn list(raw: &str) -> Vec<String> {
    raw.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads the three files, with `version` and `release_date` as the caller names them (the
/// BDPM files carry neither).
pub fn parse(files: Files<'_>, version: &str, release_date: Option<chrono::NaiveDate>) -> Result<Parsed, FileError> {
    let mut encodings = Vec::new();
    let mut specialities: BTreeMap<String, Speciality> = BTreeMap::new();

    let f = files.specialities;
    let (text, enc) = decode(f.bytes);
    encodings.push((f.name.to_owned(), enc));
    for (n, line) in numbered_lines(&text) {
        let c = columns(f.name, n, line, 11)?;
        let code = cis(f.name, n, c[0])?;
        if c[1].is_empty() {
            return Err(FileError::new(f.name, Some(n), "has no speciality name (column 2)"));
        }
        let authorised_on = if c[7].is_empty() {
            None
        } else {
            Some(french_date(c[7]).ok_or_else(|| {
                FileError::new(
                    f.name,
                    Some(n),
                    format!("authorisation date {:?} is not dd/mm/yyyy", c[7]),
                )
            })?)
        };
        let s = Speciality {
            name: c[1].to_owned(),
            form: c[2].to_owned(),
            routes: list(c[3]),
            authorisation_status: c[4].to_owned(),
            procedure: c[5].to_owned(),
            marketed: c[6].eq_ignore_ascii_case("Commercialisée"),
            authorised_on,
            holders: list(c[10]),
            substances: Vec::new(),
            presentations: Vec::new(),
            retired: false,
        };
        if specialities.insert(code.clone(), s).is_some() {
            return Err(FileError::new(f.name, Some(n), format!("CIS {code} appears twice")));
        }
    }
    if specialities.is_empty() {
        return Err(FileError::new(f.name, None, "lists no speciality"));
    }

    let f = files.presentations;
    let (text, enc) = decode(f.bytes);
    encodings.push((f.name.to_owned(), enc));
    for (n, line) in numbered_lines(&text) {
        let c = columns(f.name, n, line, 7)?;
        let code = cis(f.name, n, c[0])?;
        let cip13 = c[6];
        if cip13.len() != 13 || !cip13.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FileError::new(
                f.name,
                Some(n),
                format!("CIP13 code {cip13:?} is not 13 digits"),
            ));
        }
        if !c[5].is_empty() && french_date(c[5]).is_none() {
            return Err(FileError::new(
                f.name,
                Some(n),
                format!("declaration date {:?} is not dd/mm/yyyy", c[5]),
            ));
        }
        let s = speciality_of(&mut specialities, &code, f.name, n, files.specialities.name)?;
        s.presentations.push(Presentation {
            cip13: cip13.to_owned(),
            label: c[2].to_owned(),
            status: c[3].to_owned(),
        });
    }

    let f = files.compositions;
    let (text, enc) = decode(f.bytes);
    encodings.push((f.name.to_owned(), enc));
    for (n, line) in numbered_lines(&text) {
        let c = columns(f.name, n, line, 7)?;
        let code = cis(f.name, n, c[0])?;
        let nature = c[6];
        if nature != "SA" && nature != "FT" {
            return Err(FileError::new(
                f.name,
                Some(n),
                format!("component nature {nature:?} is neither SA nor FT"),
            ));
        }
        if c[3].is_empty() {
            return Err(FileError::new(f.name, Some(n), "has no substance name (column 4)"));
        }
        let s = speciality_of(&mut specialities, &code, f.name, n, files.specialities.name)?;
        s.substances.push(Substance {
            code: c[2].to_owned(),
            name: c[3].to_owned(),
            dosage: c[4].to_owned(),
            nature: nature.to_owned(),
        });
    }

    let entries = specialities
        .into_iter()
        .map(|(code, s)| ((EntryKind::Speciality, code), Entry::Speciality(s)))
        .collect();
    Ok(Parsed {
        content: ReleaseContent {
            source: Source::Bdpm,
            version: version.to_owned(),
            release_date,
            files: vec![
                files.specialities.record(),
                files.presentations.record(),
                files.compositions.record(),
            ],
            entries,
        },
        encodings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($dir:literal, $name:literal) => {
            InputFile {
                name: $name,
                bytes: include_bytes!(concat!("../../../../tests/fixtures/reference/", $dir, "/", $name)),
            }
        };
    }

    fn utf8() -> Files<'static> {
        Files {
            specialities: fixture!("bdpm-utf8", "CIS_bdpm.txt"),
            presentations: fixture!("bdpm-utf8", "CIS_CIP_bdpm.txt"),
            compositions: fixture!("bdpm-utf8", "CIS_COMPO_bdpm.txt"),
        }
    }

    fn speciality(p: &Parsed, cis: &str) -> Speciality {
        match p.content.entries.get(&(EntryKind::Speciality, cis.to_owned())) {
            Some(Entry::Speciality(s)) => s.clone(),
            other => panic!("CIS {cis}: {other:?}"),
        }
    }

    #[test]
    fn reads_specialities_presentations_and_compositions() {
        let p = parse(utf8(), "2026-11-30", None).expect("fixture parses");
        assert!(p.encodings.iter().all(|(_, e)| *e == Encoding::Utf8));
        assert_eq!(p.content.entries.len(), 4);
        let s = speciality(&p, "60000001");
        assert_eq!(s.name, "SYNTHETIQUA 150 mg/mL, solution injectable");
        assert_eq!(s.routes, ["sous-cutanée"]);
        assert!(s.marketed);
        assert_eq!(s.authorised_on, chrono::NaiveDate::from_ymd_opt(2018, 2, 23));
        assert_eq!(s.holders, ["LABORATOIRE FICTIF"]);
        assert_eq!(s.presentations.len(), 2);
        assert_eq!(s.substances[0].name, "SYNTHÉTIZUMAB");
        assert_eq!(s.substances[0].nature, "SA");
        assert!(!speciality(&p, "60000003").marketed);
    }

    #[test]
    fn a_windows_1252_release_reads_the_same() {
        let cp = Files {
            specialities: fixture!("bdpm-cp1252", "CIS_bdpm.txt"),
            presentations: fixture!("bdpm-cp1252", "CIS_CIP_bdpm.txt"),
            compositions: fixture!("bdpm-cp1252", "CIS_COMPO_bdpm.txt"),
        };
        let a = parse(utf8(), "v", None).expect("utf-8");
        let b = parse(cp, "v", None).expect("cp1252");
        assert!(b.encodings.iter().all(|(_, e)| *e == Encoding::Windows1252));
        assert_eq!(a.content.entries, b.content.entries);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_file_and_line() {
        let text = std::str::from_utf8(utf8().specialities.bytes).expect("utf-8");
        let cases = [
            (text.replacen("60000002", "6000002", 1), 2, "is not 8 digits"),
            (text.replacen("23/02/2018", "2018-02-23", 1), 1, "is not dd/mm/yyyy"),
            (text.replacen('\t', " ", 12), 1, "tab-separated columns"),
        ];
        for (bad, line, message) in cases {
            let files = Files {
                specialities: InputFile {
                    name: "CIS_bdpm.txt",
                    bytes: bad.as_bytes(),
                },
                ..utf8()
            };
            let e = parse(files, "v", None).expect_err(message);
            assert_eq!((e.file.as_str(), e.line), ("CIS_bdpm.txt", Some(line)), "{e}");
            assert!(e.message.contains(message), "{e}");
        }
        let compo = std::str::from_utf8(utf8().compositions.bytes).expect("utf-8");
        let orphan = compo.replacen("60000004", "69999999", 1);
        let files = Files {
            compositions: InputFile {
                name: "CIS_COMPO_bdpm.txt",
                bytes: orphan.as_bytes(),
            },
            ..utf8()
        };
        let e = parse(files, "v", None).expect_err("orphan component");
        assert!(e.message.contains("CIS 69999999 is not in CIS_bdpm.txt"), "{e}");
    }
}
