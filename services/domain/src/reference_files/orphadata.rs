//! The Orphanet nomenclature, as Orphadata publishes it: the `product1` XML (`en_product1.xml`,
//! `fr_product1.xml`, or the nomenclature pack's `ORPHAnomenclature_*.xml`), CC BY 4.0.
//!
//! From each `DisorderList/Disorder`: `OrphaCode`, `Name`, `SynonymList/Synonym`,
//! `DisorderType/Name`, the ICD-10 entries of `ExternalReferenceList/ExternalReference`
//! (`Reference`, and the relation of `DisorderMappingRelation/Name`: `E`, `NTBT`, `BTNT`, `ND`,
//! `W`), and `DisorderFlagList/DisorderFlag/Label`: an entity flagged `Inactive...` (deprecated,
//! obsolete, moved) is loaded retired. The root `JDBOR` element's `version` and `date` give
//! the release's version and date.

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};

use super::{FileError, InputFile, decode, decode_latin1};
use crate::catalogue::{Disease, Entry, EntryKind, Icd10Mapping, ReleaseContent, Source};
use crate::codes::{Icd10, OrphaCode};

#[derive(Default)]
struct Current {
    /// Byte offset of the `<Disorder>` tag, for the line of an error.
    at: usize,
    code: String,
    name: String,
    synonyms: Vec<String>,
    entity_type: String,
    flags: Vec<String>,
    icd10: Vec<Icd10Mapping>,
    ext_source: String,
    ext_reference: String,
    ext_relation: String,
}

/// Reads a `product1` file.
pub fn parse(file: InputFile<'_>) -> Result<ReleaseContent, FileError> {
    let text = xml_text(file)?;
    let err = |at: usize, message: String| FileError::new(file.name, Some(line_of(&text, at)), message);
    let mut reader = quick_xml::Reader::from_str(&text);
    reader.config_mut().trim_text(true);

    let mut path: Vec<String> = Vec::new();
    let mut version = String::new();
    let mut date = None;
    let mut current: Option<Current> = None;
    // Where, under the current disorder, the text being read goes; its text so far.
    let mut text_buf = String::new();
    let mut entries = BTreeMap::new();
    let mut seen_list = false;

    loop {
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
            err(at, format!("malformed XML: {e}"))
        })?;
        // Just past the event read: on the line of its closing `>`.
        let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match event {
            Event::Start(e) => {
                let name = tag(&e);
                if path.is_empty() && name == "JDBOR" {
                    for a in e.attributes().flatten() {
                        let value = a.unescape_value().map(|v| v.into_owned()).unwrap_or_default();
                        match a.key.as_ref() {
                            b"version" => version = value,
                            b"date" => {
                                date = chrono::NaiveDate::parse_from_str(value.get(..10).unwrap_or(""), "%Y-%m-%d").ok()
                            }
                            _ => {}
                        }
                    }
                }
                if name == "DisorderList" && path.len() == 1 {
                    seen_list = true;
                }
                if name == "Disorder" && path.len() == 2 && path[1] == "DisorderList" {
                    current = Some(Current {
                        at,
                        ..Current::default()
                    });
                }
                path.push(name);
                text_buf.clear();
            }
            // Text matters only under a disorder.
            Event::Text(t) if current.is_some() => {
                let s = t.decode().map_err(|e| err(at, format!("bad text: {e}")))?;
                text_buf.push_str(&s);
            }
            Event::CData(t) if current.is_some() => text_buf.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) if current.is_some() => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text_buf.push(c);
                } else {
                    let name = r.decode().map_err(|e| err(at, format!("bad reference: {e}")))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => text_buf.push_str(s),
                        None => return Err(err(at, format!("unknown entity &{name};"))),
                    }
                }
            }
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err(err(at, "closing tag without an opening one".into()));
                };
                if let Some(c) = current.as_mut() {
                    // The path below the disorder: DisorderList/Disorder is path[1..3].
                    let rel: Vec<&str> = path.iter().skip(3).map(String::as_str).collect();
                    let value = text_buf.trim();
                    match (rel.as_slice(), name.as_str()) {
                        ([], "OrphaCode") => c.code = value.to_owned(),
                        ([], "Name") => c.name = value.to_owned(),
                        (["SynonymList"], "Synonym") if !value.is_empty() => c.synonyms.push(value.to_owned()),
                        (["DisorderType"], "Name") => c.entity_type = value.to_owned(),
                        (["DisorderFlagList", "DisorderFlag"], "Label") => c.flags.push(value.to_owned()),
                        (["ExternalReferenceList", "ExternalReference"], "Source") => c.ext_source = value.to_owned(),
                        (["ExternalReferenceList", "ExternalReference"], "Reference") => {
                            c.ext_reference = value.to_owned()
                        }
                        (["ExternalReferenceList", "ExternalReference", "DisorderMappingRelation"], "Name") => {
                            c.ext_relation = value.split_whitespace().next().unwrap_or("").to_owned()
                        }
                        (["ExternalReferenceList"], "ExternalReference") => {
                            let source = std::mem::take(&mut c.ext_source);
                            let reference = std::mem::take(&mut c.ext_reference);
                            let relation = std::mem::take(&mut c.ext_relation);
                            if source == "ICD-10" {
                                let code = Icd10::parse(&reference).map_err(|e| {
                                    err(
                                        at,
                                        format!("ORPHA:{}: ICD-10 reference {reference:?} {}", c.code, e.description),
                                    )
                                })?;
                                c.icd10.push(Icd10Mapping {
                                    code: code.as_str().to_owned(),
                                    relation,
                                });
                            }
                        }
                        _ => {}
                    }
                    if name == "Disorder" && path.len() == 2 {
                        let c = current.take().unwrap_or_default();
                        let (code, disease) = disorder(c).map_err(|(at, m)| err(at, m))?;
                        if entries
                            .insert((EntryKind::Disease, code.clone()), Entry::Disease(disease))
                            .is_some()
                        {
                            return Err(err(at, format!("ORPHA:{code} appears twice")));
                        }
                    }
                }
                text_buf.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_list {
        return Err(FileError::new(
            file.name,
            None,
            "has no JDBOR/DisorderList element: not an Orphadata product1 file",
        ));
    }
    if entries.is_empty() {
        return Err(FileError::new(file.name, None, "lists no disorder"));
    }
    Ok(ReleaseContent {
        source: Source::Orphadata,
        version,
        release_date: date,
        files: vec![file.record()],
        entries,
    })
}

fn disorder(c: Current) -> Result<(String, Disease), (usize, String)> {
    let code =
        OrphaCode::parse(&c.code).map_err(|e| (c.at, format!("Disorder: OrphaCode {:?} {}", c.code, e.description)))?;
    if c.name.is_empty() {
        return Err((c.at, format!("ORPHA:{}: Disorder has no Name", code.as_str())));
    }
    let retired = c.flags.iter().any(|f| f.to_ascii_lowercase().starts_with("inactive"));
    Ok((
        code.as_str().to_owned(),
        Disease {
            name: c.name,
            synonyms: c.synonyms,
            icd10: c.icd10,
            filiere: None,
            entity_type: c.entity_type,
            confirmed: true,
            retired,
        },
    ))
}

fn tag(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

/// The file as text, in the encoding its XML declaration names (ISO-8859-1 in older releases,
/// UTF-8 otherwise).
fn xml_text(file: InputFile<'_>) -> Result<String, FileError> {
    let head = String::from_utf8_lossy(&file.bytes[..file.bytes.len().min(200)]).to_ascii_lowercase();
    let declared = head
        .split("encoding=")
        .nth(1)
        .and_then(|rest| rest.get(1..))
        .and_then(|rest| rest.split(['"', '\'']).next())
        .unwrap_or("utf-8")
        .to_owned();
    match declared.as_str() {
        "iso-8859-1" | "latin1" | "latin-1" => Ok(decode_latin1(file.bytes)),
        "windows-1252" | "cp1252" => Ok(decode(file.bytes).0),
        "utf-8" | "utf8" => {
            let bytes = file.bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(file.bytes);
            std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
                let text = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
                FileError::new(
                    file.name,
                    Some(line_of(&text, text.len())),
                    "is declared UTF-8 but is not valid UTF-8",
                )
            })
        }
        other => Err(FileError::new(
            file.name,
            Some(1),
            format!("unsupported encoding {other:?}"),
        )),
    }
}

fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../../../tests/fixtures/reference/orphadata/en_product1.xml");

    fn input(bytes: &[u8]) -> InputFile<'_> {
        InputFile {
            name: "en_product1.xml",
            bytes,
        }
    }

    #[test]
    fn reads_codes_names_synonyms_mappings_and_flags() {
        let r = parse(input(FIXTURE)).expect("fixture parses");
        assert_eq!(r.source, Source::Orphadata);
        assert_eq!(r.version, "1.3.30 / 4.1.7 [2025-07-01] (orientdb version)");
        assert_eq!(r.release_date, chrono::NaiveDate::from_ymd_opt(2025, 7, 1));
        let disease = |code: &str| match r.entries.get(&(EntryKind::Disease, code.to_owned())) {
            Some(Entry::Disease(d)) => d.clone(),
            other => panic!("ORPHA:{code}: {other:?}"),
        };
        let a = disease("98878");
        assert_eq!(a.name, "Hemophilia A");
        assert_eq!(a.synonyms, ["Factor VIII deficiency"]);
        assert_eq!(
            a.icd10,
            [Icd10Mapping {
                code: "D66".into(),
                relation: "E".into()
            }]
        );
        assert_eq!(a.entity_type, "Disease");
        assert!(!a.retired);
        // Entities in text are resolved.
        assert_eq!(disease("903").synonyms, ["von Willebrand's disease"]);
        assert_eq!(disease("849").icd10[0].relation, "NTBT");
        // An inactive entity is loaded retired.
        assert!(disease("9999991").retired);
        // The nested disorder of an association is not a disorder of the list.
        assert_eq!(r.entries.len(), 11);
        assert_eq!(r.files[0].bytes, FIXTURE.len() as u64);
    }

    #[test]
    fn a_latin1_release_reads_as_declared() {
        let text = std::str::from_utf8(FIXTURE).expect("fixture is UTF-8");
        let latin1: Vec<u8> = text
            .replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"")
            .replace("Hemophilia A", "Hémophilie A")
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
            .collect();
        let r = parse(input(&latin1)).expect("latin-1 parses");
        match r.entries.get(&(EntryKind::Disease, "98878".to_owned())) {
            Some(Entry::Disease(d)) => assert_eq!(d.name, "Hémophilie A"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_files_name_the_line() {
        let text = std::str::from_utf8(FIXTURE).expect("utf-8");
        let line = |needle: &str| text.lines().position(|l| l.contains(needle)).expect("in fixture") + 1;

        let bad_code = text.replacen("<OrphaCode>98879</OrphaCode>", "<OrphaCode>98A79</OrphaCode>", 1);
        let e = parse(input(bad_code.as_bytes())).expect_err("bad code");
        assert_eq!(e.file, "en_product1.xml");
        assert!(e.message.contains("OrphaCode \"98A79\""), "{e}");
        // The line of the disorder holding it.
        assert_eq!(e.line, Some(line("<OrphaCode>98879</OrphaCode>") - 1), "{e}");

        let bad_icd = text.replacen("<Reference>D67</Reference>", "<Reference>67</Reference>", 1);
        let e = parse(input(bad_icd.as_bytes())).expect_err("bad icd");
        assert!(e.message.contains("ICD-10 reference \"67\""), "{e}");

        let unclosed = text.replacen("</Name>", "", 1);
        let e = parse(input(unclosed.as_bytes())).expect_err("unclosed");
        assert!(e.message.starts_with("malformed XML"), "{e}");
        assert!(e.line.is_some());

        let twice = text.replacen("<OrphaCode>98879</OrphaCode>", "<OrphaCode>98878</OrphaCode>", 1);
        assert!(
            parse(input(twice.as_bytes()))
                .expect_err("dup")
                .message
                .contains("appears twice")
        );

        let e = parse(input(b"<?xml version=\"1.0\"?><other/>")).expect_err("not orphadata");
        assert!(e.message.contains("not an Orphadata product1 file"), "{e}");
    }
}
