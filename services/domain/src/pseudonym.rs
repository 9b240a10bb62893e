//! Keyed pseudonyms: HMAC-SHA256 over a normalised identity, with a key that lives outside the
//! database. The identity itself is consumed here and never stored, logged or echoed.

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{Pseudonym, PseudonymKind, Sex};

/// Secret key of the pseudonymisation. Its `Debug` never prints the bytes.
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

impl PseudonymKey {
    /// At least 32 bytes of key material.
    pub fn new(bytes: Vec<u8>) -> Result<Self, &'static str> {
        if bytes.len() < 32 {
            return Err("the pseudonymisation key must hold at least 32 bytes");
        }
        Ok(Self(bytes))
    }

    /// Decodes a hex-encoded key (the format of key files and environment variables).
    pub fn from_hex(text: &str) -> Result<Self, &'static str> {
        let bytes = hex::decode(text.trim()).map_err(|_| "the pseudonymisation key must be hex-encoded")?;
        Self::new(bytes)
    }
}

/// Identity fields as a centre sends them. `Debug` is redacted.
pub struct Identity {
    pub last_name: String,
    pub first_name: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(<redacted>)")
    }
}

/// Upper-cases, strips accents of Latin letters, and keeps letters only, so that
/// "Lefèvre-Dupont " and "LEFEVRE DUPONT" give the same pseudonym.
fn normalise_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let base = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => 'A',
            'ç' | 'Ç' => 'C',
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'E',
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'I',
            'ñ' | 'Ñ' => 'N',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => 'O',
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'U',
            'ý' | 'ÿ' | 'Ý' => 'Y',
            'œ' | 'Œ' => {
                out.push_str("OE");
                continue;
            }
            'æ' | 'Æ' => {
                out.push_str("AE");
                continue;
            }
            c if c.is_alphabetic() => c.to_uppercase().next().unwrap_or(c),
            _ => continue,
        };
        out.push(base);
    }
    out
}

impl Identity {
    /// Whether both names still hold letters once normalised.
    pub fn names_are_usable(&self) -> (bool, bool) {
        (
            !normalise_name(&self.last_name).is_empty(),
            !normalise_name(&self.first_name).is_empty(),
        )
    }
}

/// HMAC-SHA256(key, "LAST|FIRST|YYYY-MM-DD|SEX") as lowercase hex.
pub fn pseudonymise(key: &PseudonymKey, identity: &Identity) -> Pseudonym {
    // new_from_slice accepts keys of any length for HMAC.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&key.0) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    let normalised = format!(
        "{}|{}|{}|{}",
        normalise_name(&identity.last_name),
        normalise_name(&identity.first_name),
        identity.birth_date.format("%Y-%m-%d"),
        identity.sex.code()
    );
    mac.update(normalised.as_bytes());
    Pseudonym {
        kind: PseudonymKind::Hmac,
        value: hex::encode(mac.finalize().into_bytes()),
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC is defined for keys of every length; this cannot happen.
    panic!("HMAC rejected a key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PseudonymKey {
        PseudonymKey::new(vec![b; 32]).unwrap()
    }

    fn ident(last: &str, first: &str) -> Identity {
        Identity {
            last_name: last.into(),
            first_name: first.into(),
            birth_date: NaiveDate::from_ymd_opt(2012, 3, 4).unwrap(),
            sex: Sex::Male,
        }
    }

    #[test]
    fn spelling_variants_of_one_identity_share_a_pseudonym() {
        let a = pseudonymise(&key(1), &ident("Lefèvre-Dupont", "Jérôme"));
        let b = pseudonymise(&key(1), &ident(" LEFEVRE DUPONT", "jerome"));
        assert_eq!(a, b);
        assert_eq!(a.value.len(), 64);
        assert!(!a.value.contains("LEFEVRE"));
    }

    #[test]
    fn another_key_or_person_gives_another_pseudonym() {
        let a = pseudonymise(&key(1), &ident("Martin", "Paul"));
        assert_ne!(a, pseudonymise(&key(2), &ident("Martin", "Paul")));
        assert_ne!(a, pseudonymise(&key(1), &ident("Martin", "Pauline")));
    }

    #[test]
    fn short_or_malformed_keys_are_refused() {
        assert!(PseudonymKey::new(vec![0; 16]).is_err());
        assert!(PseudonymKey::from_hex("zz").is_err());
        assert!(PseudonymKey::from_hex(&"ab".repeat(32)).is_ok());
        assert_eq!(format!("{:?}", key(7)), "PseudonymKey(<redacted>)");
    }
}
