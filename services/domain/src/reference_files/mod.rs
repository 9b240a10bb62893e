//! Readers of the official reference files, in their own layouts: the Orphanet nomenclature
//! (Orphadata `product1` XML), the BDPM drug database files, an ATC list, and a MedDRA
//! licensee's ASCII distribution files. Each takes the files' bytes (the caller reads them) and
//! returns a [`ReleaseContent`] or the first error, naming the file and line: a file is loaded
//! whole or not at all.
//!
//! See `docs/reference-data.md` for the layouts and what is taken from each.

pub mod atc;
pub mod bdpm;
pub mod meddra;
pub mod orphadata;

use std::fmt;

use sha2::{Digest, Sha256};

use crate::catalogue::ReleaseFile;

/// Largest reference file read (the Orphadata nomenclature is about 100 MB, MedDRA's LLT file
/// about 10 MB): past it, a file is refused before it is parsed.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Why a file could not be loaded: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    /// 1-based; none for a fault of the whole file (a missing file, an empty one).
    pub line: Option<usize>,
    pub message: String,
}

impl FileError {
    pub fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// One input file: its name (as reported in errors and recorded in the release) and bytes.
#[derive(Debug, Clone, Copy)]
pub struct InputFile<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

impl InputFile<'_> {
    pub fn record(&self) -> ReleaseFile {
        ReleaseFile {
            name: self.name.to_owned(),
            sha256: hex::encode(Sha256::digest(self.bytes)),
            bytes: self.bytes.len() as u64,
        }
    }
}

/// The text encodings reference files come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// Windows-1252 (a superset of ISO-8859-1 for printable characters), in which older BDPM
    /// and MedDRA files are published.
    Windows1252,
}

/// Decodes a text file: UTF-8 (a byte-order mark dropped) when it is valid UTF-8, else
/// Windows-1252. A Windows-1252 text that happens to be valid UTF-8 is, in practice, ASCII,
/// which reads the same either way.
pub fn decode(bytes: &[u8]) -> (String, Encoding) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), Encoding::Utf8),
        Err(_) => (bytes.iter().map(|&b| windows_1252(b)).collect(), Encoding::Windows1252),
    }
}

/// Decodes ISO-8859-1 (each byte is the code point of the same value).
pub fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}',
        '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}', '\u{017D}', '\u{8F}', '\u{90}', '\u{2018}',
        '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}',
        '\u{203A}', '\u{0153}', '\u{9D}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// Splits one delimited line (CSV-like), double quotes protecting delimiters (`""` is a quote).
pub fn split_delimited(line: &str, delimiter: char) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.trim().is_empty() => {
                field.clear();
                quoted = true
            }
            (d, false) if d == delimiter => fields.push(std::mem::take(&mut field).trim().to_owned()),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("has an unclosed double quote");
    }
    fields.push(field.trim().to_owned());
    Ok(fields)
}

/// A `dd/mm/yyyy` date, as the BDPM writes them.
fn french_date(raw: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(raw.trim(), "%d/%m/%Y").ok()
}

/// The lines of a text with their 1-based numbers, blank ones skipped, line ends trimmed.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches(['\r', '\n'])))
        .filter(|(_, l)| !l.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utf8_when_it_can_be_and_windows_1252_otherwise() {
        assert_eq!(
            decode("Hémophilie".as_bytes()),
            ("Hémophilie".to_owned(), Encoding::Utf8)
        );
        assert_eq!(decode(b"\xEF\xBB\xBFabc").0, "abc");
        assert_eq!(
            decode(b"H\xE9mophilie \x80 \x9C"),
            ("Hémophilie € œ".to_owned(), Encoding::Windows1252)
        );
        assert_eq!(decode_latin1(b"\xE9"), "é");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        assert_eq!(
            FileError::new("CIS_bdpm.txt", Some(3), "bad").to_string(),
            "CIS_bdpm.txt:3: bad"
        );
        assert_eq!(FileError::new("pt.asc", None, "missing").to_string(), "pt.asc: missing");
    }
}
