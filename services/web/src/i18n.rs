//! The pages' words, from message files (`messages/fr.toml`, `messages/en.toml`), never from
//! strings in code. French is the default; a reader may choose English (a cookie, set by the
//! language links). Dates are written the French way (31/12/2026) in French.

use std::{collections::HashMap, sync::LazyLock};

use chrono::NaiveDate;

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    /// The language a `lang` cookie or query value names; French otherwise.
    pub fn from_code(code: &str) -> Lang {
        match code {
            "en" => Lang::En,
            _ => Lang::Fr,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// The other language, offered by the switch in every page's header.
    pub fn other(self) -> Lang {
        match self {
            Lang::Fr => Lang::En,
            Lang::En => Lang::Fr,
        }
    }

    /// The text of `key` in this language; the key itself when a file lacks it (a test checks
    /// that every key the templates and the code use is in both files).
    pub fn t(self, key: &str) -> &str {
        let catalog = match self {
            Lang::Fr => &*FR,
            Lang::En => &*EN,
        };
        match catalog.get(key) {
            Some(text) => text.as_str(),
            None => {
                tracing::warn!(key, lang = self.code(), "missing message");
                key
            }
        }
    }

    /// A date as this language writes it: 31/12/2026 in French, 2026-12-31 in English (ISO,
    /// never ambiguous).
    pub fn date(self, d: NaiveDate) -> String {
        match self {
            Lang::Fr => d.format("%d/%m/%Y").to_string(),
            Lang::En => d.format("%Y-%m-%d").to_string(),
        }
    }

    /// A count with its thousands grouped as this language does: 12 345 (a narrow no-break
    /// space) in French, 12,345 in English.
    pub fn count(self, n: u64) -> String {
        let digits = n.to_string();
        let sep = match self {
            Lang::Fr => '\u{202F}',
            Lang::En => ',',
        };
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(sep);
            }
            out.push(c);
        }
        out
    }

    /// An instant, in UTC, to the minute.
    pub fn instant(self, t: chrono::DateTime<chrono::Utc>) -> String {
        match self {
            Lang::Fr => t.format("%d/%m/%Y %H:%M UTC").to_string(),
            Lang::En => t.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

pub const FR_TOML: &str = include_str!("../messages/fr.toml");
pub const EN_TOML: &str = include_str!("../messages/en.toml");

static FR: LazyLock<HashMap<String, String>> = LazyLock::new(|| catalog(FR_TOML));
static EN: LazyLock<HashMap<String, String>> = LazyLock::new(|| catalog(EN_TOML));

/// Keys are the dotted paths of a message file's tables (`[nav] patients = "..."` is
/// `nav.patients`).
pub fn catalog(text: &str) -> HashMap<String, String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut HashMap<String, String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::String(s) => {
                    out.insert(key, s.clone());
                }
                toml::Value::Table(t) => walk(&key, t, out),
                other => panic!("message {key} is not text: {other}"),
            }
        }
    }
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("a message file does not parse: {e}"));
    let mut out = HashMap::new();
    walk("", &table, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_thousands_as_each_language_does() {
        assert_eq!(Lang::Fr.count(1_234_567), "1\u{202F}234\u{202F}567");
        assert_eq!(Lang::En.count(1_234_567), "1,234,567");
        assert_eq!(Lang::En.count(999), "999");
        assert_eq!(Lang::Fr.count(0), "0");
    }

    /// Every key the templates and the code pass to `.t(`, and every label key built from a
    /// code (`pathway.AAC`), is in both files, and the files have the same keys.
    #[test]
    fn both_message_files_have_every_key_used() {
        let fr = catalog(FR_TOML);
        let en = catalog(EN_TOML);
        let mut only: Vec<_> = fr.keys().filter(|k| !en.contains_key(*k)).collect();
        only.extend(en.keys().filter(|k| !fr.contains_key(*k)));
        assert!(only.is_empty(), "keys in one message file only: {only:?}");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"));
        let mut used = Vec::new();
        for sub in ["templates", "src", "src/pages"] {
            for entry in std::fs::read_dir(format!("{dir}/{sub}")).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for quote in [".t(\""] {
                    for part in text.split(quote).skip(1) {
                        if let Some(key) = part.split('"').next() {
                            used.push((path.display().to_string(), key.to_owned()));
                        }
                    }
                }
            }
        }
        assert!(used.len() > 50, "the templates use the message files");
        let missing: Vec<_> = used.iter().filter(|(_, k)| !fr.contains_key(k)).collect();
        assert!(
            missing.is_empty(),
            "keys used but not in the message files: {missing:?}"
        );
        for (prefix, codes) in crate::labels::CODED.iter() {
            for code in codes {
                let key = format!("{prefix}.{code}");
                assert!(fr.contains_key(&key), "no label for {key}");
            }
        }
    }

    #[test]
    fn dates_are_written_the_french_way_in_french() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        assert_eq!(Lang::Fr.date(d), "09/03/2026");
        assert_eq!(Lang::En.date(d), "2026-03-09");
        assert_eq!(Lang::from_code("de"), Lang::Fr);
    }
}
