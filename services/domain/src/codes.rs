//! Typed national and international codes. Each newtype has a private field and a `parse`
//! constructor, so a function that takes an [`OrphaCode`] cannot be handed a bad one.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CodeError;
use crate::reference;

macro_rules! code_type {
    // A code checked against a shipped list on input: what is stored decodes by its format only
    // (`from_stored`, written beside `parse`), so that a code a later list drops stays readable.
    ($(#[$doc:meta])* $name:ident, listed) => {
        code_type!(@common $(#[$doc])* $name);
    };
    ($(#[$doc:meta])* $name:ident) => {
        code_type!(@common $(#[$doc])* $name);

        impl $name {
            /// A stored code: its format is its only rule.
            pub fn from_stored(raw: &str) -> Result<Self, CodeError> {
                Self::parse(raw)
            }
        }
    };
    (@common $(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        // Serde reads stored bodies (versions, snapshots, run parameters), never input: by
        // format only. Input goes through `parse`.
        impl TryFrom<String> for $name {
            type Error = CodeError;
            fn try_from(value: String) -> Result<Self, CodeError> {
                Self::from_stored(&value)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn require(raw: &str) -> Result<&str, CodeError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        Err(CodeError::required())
    } else {
        Ok(trimmed)
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Luhn check over a string of digits (the check digit is the last one).
pub(crate) fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Computes the Luhn check digit to append to `payload` (used by the synthetic data generator).
pub fn luhn_check_digit(payload: &str) -> char {
    for d in 0..10u8 {
        let candidate = format!("{payload}{d}");
        if luhn_valid(&candidate) {
            return char::from(b'0' + d);
        }
    }
    '0'
}

code_type!(
    /// Orphanet code: 1 to 7 digits (an `ORPHA:` prefix is accepted on input). Whether the
    /// reference release in force lists it is checked on input by the catalogue
    /// ([`crate::catalogue::Catalogue::check_disease`]), never on stored data.
    OrphaCode
);

impl OrphaCode {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        let s = s.strip_prefix("ORPHA:").unwrap_or(s);
        if !all_digits(s) || s.len() > 7 {
            return Err(CodeError::new("BAD_FORMAT", "must be an ORPHA code of 1 to 7 digits"));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// WHO ATC code at substance level: 7 characters, e.g. B02BX06.
    Atc
);

impl Atc {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        let b = s.as_bytes();
        let ok = b.len() == 7
            && b"ABCDGHJLMNPRSV".contains(&b[0])
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && b[3].is_ascii_uppercase()
            && b[4].is_ascii_uppercase()
            && b[5].is_ascii_digit()
            && b[6].is_ascii_digit();
        if !ok {
            return Err(CodeError::new(
                "BAD_FORMAT",
                "must be a 7-character ATC code such as B02BX06 (anatomical group, 2 digits, 2 letters, 2 digits)",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// CIS code of the French public drug database: 8 digits.
    Cis
);

impl Cis {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if s.len() != 8 || !all_digits(s) {
            return Err(CodeError::new("BAD_FORMAT", "must be a CIS code of 8 digits"));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// FINESS number of an establishment: 9 characters, department (2 digits, or 2A/2B) then
    /// digits, the last one a Luhn check digit (Corsican 2A/2B count as 20 for the check).
    Finess
);

impl Finess {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        let upper = s.to_ascii_uppercase();
        if upper.len() != 9 {
            return Err(CodeError::new("BAD_FORMAT", "must be a FINESS number of 9 characters"));
        }
        let digits = if upper.starts_with("2A") || upper.starts_with("2B") {
            format!("20{}", &upper[2..])
        } else {
            upper.clone()
        };
        if !all_digits(&digits) {
            return Err(CodeError::new(
                "BAD_FORMAT",
                "must be a FINESS number of 9 digits (2A/2B allowed for Corsica)",
            ));
        }
        if !luhn_valid(&digits) {
            return Err(CodeError::new("BAD_CHECK_DIGIT", "has a wrong check digit"));
        }
        Ok(Self(upper))
    }
}

code_type!(
    /// RPPS number of a health professional: 11 digits, the last a Luhn check digit.
    Rpps
);

impl Rpps {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if s.len() != 11 || !all_digits(s) {
            return Err(CodeError::new("BAD_FORMAT", "must be an RPPS number of 11 digits"));
        }
        if !luhn_valid(s) {
            return Err(CodeError::new("BAD_CHECK_DIGIT", "has a wrong check digit"));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// MedDRA code (preferred term or system organ class): 8 digits.
    MeddraCode
);

impl MeddraCode {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if s.len() != 8 || !all_digits(s) {
            return Err(CodeError::new("BAD_FORMAT", "must be a MedDRA code of 8 digits"));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// ICD-10 code: a letter, two digits, optionally a dot and one or two characters (D68.0).
    Icd10
);

impl Icd10 {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        let b = s.as_bytes();
        let head_ok = b.len() >= 3 && b[0].is_ascii_uppercase() && b[1].is_ascii_digit() && b[2].is_ascii_digit();
        let tail_ok = match b.len() {
            3 => true,
            5 | 6 => b[3] == b'.' && b[4..].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
            _ => false,
        };
        if !head_ok || !tail_ok {
            return Err(CodeError::new(
                "BAD_FORMAT",
                "must be an ICD-10 code such as D66 or G71.0",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// National rare-disease identifier (IdMR) supplied by a centre: exactly 20 digits.
    IdMr
);

impl IdMr {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if s.len() != 20 || !all_digits(s) {
            return Err(CodeError::new("BAD_FORMAT", "must be an IdMR of exactly 20 digits"));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// INSEE code of a region (2016 boundaries), from the shipped list.
    RegionCode,
    listed
);

impl RegionCode {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if reference::region(s).is_none() {
            return Err(CodeError::new(
                "UNKNOWN_CODE",
                "is not an INSEE region code of the shipped list (e.g. 11, 84, 93)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// A stored code, whether or not today's list still has it.
    pub fn from_stored(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if !all_digits(s) || s.len() > 3 {
            return Err(CodeError::new(
                "BAD_FORMAT",
                "must be an INSEE region code of 1 to 3 digits",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

code_type!(
    /// Code of a filiere de sante maladies rares, from the shipped list (e.g. MHEMO).
    Filiere,
    listed
);

impl Filiere {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?.to_ascii_uppercase();
        if reference::filiere(&s).is_none() {
            return Err(CodeError::new(
                "UNKNOWN_CODE",
                "is not a filiere code of the shipped list (e.g. MHEMO, FILNEMUS)",
            ));
        }
        Ok(Self(s))
    }

    /// A stored code, whether or not today's list still has it.
    pub fn from_stored(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(CodeError::new(
                "BAD_FORMAT",
                "must be a filiere code (letters and digits)",
            ));
        }
        Ok(Self(s.to_ascii_uppercase()))
    }
}

code_type!(
    /// Code of a follow-up measure from the shipped list (e.g. ABR, HFMSE).
    MeasureCode,
    listed
);

impl MeasureCode {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if reference::measure(s).is_none() {
            return Err(CodeError::new(
                "UNKNOWN_CODE",
                "is not a measure code of the shipped list (e.g. ABR, HFMSE, CHOP_INTEND)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// A stored code, whether or not today's list still has it.
    pub fn from_stored(raw: &str) -> Result<Self, CodeError> {
        let s = require(raw)?;
        if s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(CodeError::new(
                "BAD_FORMAT",
                "must be a measure code (capitals, digits, _)",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// Bounded free text for labels that name things, never people (names of centres, cohorts,
/// units, references). Control characters are refused.
pub fn bounded_text(raw: &str, max_chars: usize) -> Result<String, CodeError> {
    let s = require(raw)?;
    if s.chars().count() > max_chars {
        return Err(CodeError::new(
            "TOO_LONG",
            format!("must be at most {max_chars} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(CodeError::new("BAD_FORMAT", "must not contain control characters"));
    }
    // Bidirectional overrides, embeddings and isolates make text display otherwise than it
    // reads (a name shown reversed, a file name disguised).
    if s.chars()
        .any(|c| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(CodeError::new(
            "BAD_FORMAT",
            "must not contain bidirectional control characters",
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is stored is decoded by its format only: a code a later reference release drops
    /// stays readable (and is known as no longer listed), while input is still checked
    /// against today's list.
    #[test]
    fn stored_codes_are_read_by_format_and_input_against_the_list() {
        let retired: OrphaCode = serde_json::from_str("\"9999998\"").expect("a stored, retired ORPHA code reads");
        assert_eq!(retired.as_str(), "9999998");
        assert!(
            serde_json::from_str::<OrphaCode>("\"98 878\"").is_err(),
            "the format still holds"
        );
        let region: RegionCode = serde_json::from_str("\"99\"").expect("a stored region reads");
        assert_eq!(region.as_str(), "99");
        assert!(RegionCode::parse("99").is_err());
        let filiere: Filiere = serde_json::from_str("\"OLD-NETWORK\"").expect("a stored filiere reads");
        assert_eq!(filiere.as_str(), "OLD-NETWORK");
        assert!(Filiere::parse("OLD-NETWORK").is_err());
        assert!(Filiere::parse("brain-team").is_ok());
        let measure: MeasureCode = serde_json::from_str("\"RETIRED_SCALE\"").expect("a stored measure reads");
        assert_eq!(measure.as_str(), "RETIRED_SCALE");
        assert!(MeasureCode::parse("RETIRED_SCALE").is_err());
        // Codes without a list keep their one rule, the format, both ways.
        assert!(serde_json::from_str::<Finess>("\"750100125\"").is_ok());
        assert!(serde_json::from_str::<Finess>("\"750100124\"").is_err());
    }

    #[test]
    fn free_text_refuses_control_and_bidirectional_characters() {
        assert!(bounded_text("Hôpital Necker – Enfants malades", 100).is_ok());
        assert_eq!(bounded_text("a\u{7}b", 100).unwrap_err().reason, "BAD_FORMAT");
        for c in ['\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}'] {
            assert_eq!(
                bounded_text(&format!("exe{c}gnp"), 100).unwrap_err().reason,
                "BAD_FORMAT"
            );
        }
    }

    #[test]
    fn real_finess_numbers_pass_the_luhn_check() {
        assert!(Finess::parse("750100125").is_ok());
        assert!(Finess::parse("690781810").is_ok());
        assert_eq!(Finess::parse("750100126").unwrap_err().reason, "BAD_CHECK_DIGIT");
        assert_eq!(Finess::parse("75010012").unwrap_err().reason, "BAD_FORMAT");
    }

    #[test]
    fn rpps_needs_eleven_digits_and_a_check_digit() {
        let payload = "1000000001";
        let good = format!("{payload}{}", luhn_check_digit(payload));
        assert!(Rpps::parse(&good).is_ok());
        let bad_digit = if good.ends_with('9') { '0' } else { '9' };
        let bad = format!("{payload}{bad_digit}");
        assert_eq!(Rpps::parse(&bad).unwrap_err().reason, "BAD_CHECK_DIGIT");
        assert_eq!(Rpps::parse("123").unwrap_err().reason, "BAD_FORMAT");
    }

    #[test]
    fn atc_codes_follow_the_who_shape() {
        assert!(Atc::parse("B02BX06").is_ok());
        assert!(Atc::parse("b02bx06").is_err());
        assert!(Atc::parse("X02BX06").is_err());
        assert!(Atc::parse("B02BX6").is_err());
    }

    #[test]
    fn orpha_codes_are_checked_by_format() {
        assert_eq!(OrphaCode::parse("98878").unwrap().as_str(), "98878");
        assert_eq!(OrphaCode::parse("ORPHA:70").unwrap().as_str(), "70");
        assert_eq!(OrphaCode::parse("12345678").unwrap_err().reason, "BAD_FORMAT");
        assert_eq!(OrphaCode::parse("abc").unwrap_err().reason, "BAD_FORMAT");
        assert_eq!(OrphaCode::parse(" ").unwrap_err().reason, "REQUIRED");
    }

    #[test]
    fn other_codes_check_their_shape() {
        assert!(Cis::parse("60234100").is_ok());
        assert!(Cis::parse("6023410").is_err());
        assert!(MeddraCode::parse("10019021").is_ok());
        assert!(MeddraCode::parse("1001902A").is_err());
        assert!(Icd10::parse("D68.0").is_ok());
        assert!(Icd10::parse("D66").is_ok());
        assert!(Icd10::parse("D6").is_err());
        assert!(IdMr::parse("12345678901234567890").is_ok());
        assert!(IdMr::parse("1234567890123456789").is_err());
        assert!(RegionCode::parse("84").is_ok());
        assert!(RegionCode::parse("99").is_err());
        assert_eq!(Filiere::parse("mhemo").unwrap().as_str(), "MHEMO");
        assert!(Filiere::parse("NOPE").is_err());
        assert!(bounded_text("abc", 2).is_err());
        assert!(bounded_text("a\u{0}b", 10).is_err());
    }
}
