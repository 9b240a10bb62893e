//! The reference catalogue in force: diseases (ORPHA), drugs (ATC), specialities (BDPM CIS) and
//! MedDRA terms, as the reference releases recorded in the registry define them.
//!
//! Every import of an official file is a release, recorded append-only with its source, version,
//! date and checksum; the shipped lists are the first one. For each kind of entry the release in
//! force is the newest imported release of a source that supplies it, or else the newest shipped
//! one. A release carries, marked retired, every code its predecessor had and it dropped: a
//! retired code is still known (stored history names it and pages show it) but is refused on
//! input. Stored records are decoded by format only and never checked against the catalogue.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::Violations;
use crate::codes::{Atc, OrphaCode};
use crate::reference;

/// Where a release comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Source {
    /// The lists compiled into the binary (`services/domain/reference/`).
    Shipped,
    /// The Orphanet nomenclature pack (Orphadata `product1` XML).
    Orphadata,
    /// The French public drug database (BDPM) files.
    Bdpm,
    /// An ATC list (the WHO index or a national copy of it).
    Atc,
    /// A MedDRA licensee's distribution files.
    Meddra,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Shipped,
        Source::Orphadata,
        Source::Bdpm,
        Source::Atc,
        Source::Meddra,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Source::Shipped => "SHIPPED",
            Source::Orphadata => "ORPHADATA",
            Source::Bdpm => "BDPM",
            Source::Atc => "ATC",
            Source::Meddra => "MEDDRA",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The kinds of entry a release of this source supplies (all of them, whole).
    pub fn kinds(self) -> &'static [EntryKind] {
        match self {
            Source::Shipped => &[EntryKind::Disease, EntryKind::Drug],
            Source::Orphadata => &[EntryKind::Disease],
            Source::Bdpm => &[EntryKind::Speciality],
            Source::Atc => &[EntryKind::Drug],
            Source::Meddra => &[EntryKind::MeddraSoc, EntryKind::MeddraPt, EntryKind::MeddraLlt],
        }
    }
}

/// A kind of reference entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    Disease,
    Drug,
    Speciality,
    MeddraSoc,
    MeddraPt,
    MeddraLlt,
}

impl EntryKind {
    pub const ALL: [EntryKind; 6] = [
        EntryKind::Disease,
        EntryKind::Drug,
        EntryKind::Speciality,
        EntryKind::MeddraSoc,
        EntryKind::MeddraPt,
        EntryKind::MeddraLlt,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EntryKind::Disease => "DISEASE",
            EntryKind::Drug => "DRUG",
            EntryKind::Speciality => "SPECIALITY",
            EntryKind::MeddraSoc => "MEDDRA_SOC",
            EntryKind::MeddraPt => "MEDDRA_PT",
            EntryKind::MeddraLlt => "MEDDRA_LLT",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// How an ICD-10 code relates to an ORPHA code, as Orphanet qualifies its alignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icd10Mapping {
    pub code: String,
    /// `E` (exact), `NTBT` (the ORPHA code is narrower), `BTNT` (broader), `ND` (not yet
    /// decided) or `W` (wrong, kept to say so); empty when the file gives none.
    pub relation: String,
}

/// A disease of the Orphanet nomenclature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disease {
    pub name: String,
    #[serde(default)]
    pub synonyms: Vec<String>,
    #[serde(default)]
    pub icd10: Vec<Icd10Mapping>,
    /// The filière that follows the disease: a curated mapping (the shipped list), carried
    /// from release to release since no official file gives it.
    #[serde(default)]
    pub filiere: Option<String>,
    /// Orphanet's type of entity (disease, group of disorders, subtype...), when given.
    #[serde(default)]
    pub entity_type: String,
    /// False when a code or mapping was not verified against the primary source.
    #[serde(default = "yes")]
    pub confirmed: bool,
    #[serde(default)]
    pub retired: bool,
}

/// A drug at ATC substance level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drug {
    /// The substance's name (the INN where there is one).
    pub name: String,
    /// Brand name, curated (carried from release to release).
    #[serde(default)]
    pub brand: String,
    /// CIS code of the speciality, curated (carried from release to release).
    #[serde(default)]
    pub cis: Option<String>,
    /// Whether the networks follow this drug (the shipped list): the web front's pickers
    /// offer these; any drug in force may be named over gRPC.
    #[serde(default)]
    pub followed: bool,
    /// A one-shot treatment (a gene therapy): one administration, then long-term follow-up;
    /// curated (the shipped list), carried from release to release.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_administration: bool,
    #[serde(default = "yes")]
    pub confirmed: bool,
    #[serde(default)]
    pub retired: bool,
}

/// A substance in a speciality's composition (`CIS_COMPO_bdpm.txt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substance {
    pub code: String,
    pub name: String,
    pub dosage: String,
    /// `SA` (active substance) or `FT` (therapeutic fraction).
    pub nature: String,
}

/// A presentation of a speciality (`CIS_CIP_bdpm.txt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presentation {
    pub cip13: String,
    pub label: String,
    pub status: String,
}

/// A medicinal product of the BDPM, by CIS code (`CIS_bdpm.txt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speciality {
    pub name: String,
    pub form: String,
    pub routes: Vec<String>,
    /// Marketing authorisation status (`Autorisation active`, `Autorisation abrogée`...).
    pub authorisation_status: String,
    pub procedure: String,
    pub marketed: bool,
    pub authorised_on: Option<NaiveDate>,
    pub holders: Vec<String>,
    #[serde(default)]
    pub substances: Vec<Substance>,
    #[serde(default)]
    pub presentations: Vec<Presentation>,
    #[serde(default)]
    pub retired: bool,
}

/// A MedDRA term: system organ class, preferred term or lowest level term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeddraTerm {
    pub name: String,
    /// For an LLT: its PT; for a PT: its primary SOC.
    #[serde(default)]
    pub parent: Option<String>,
    /// For an LLT: MedDRA's currency flag (a non-current LLT is kept for legacy data).
    #[serde(default = "yes")]
    pub current: bool,
    #[serde(default)]
    pub retired: bool,
}

fn yes() -> bool {
    true
}

/// One entry of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    Disease(Disease),
    Drug(Drug),
    Speciality(Speciality),
    Meddra(MeddraTerm),
}

impl Entry {
    pub fn retired(&self) -> bool {
        match self {
            Entry::Disease(d) => d.retired,
            Entry::Drug(d) => d.retired,
            Entry::Speciality(s) => s.retired,
            Entry::Meddra(t) => t.retired,
        }
    }

    fn retire(mut self) -> Self {
        match &mut self {
            Entry::Disease(d) => d.retired = true,
            Entry::Drug(d) => d.retired = true,
            Entry::Speciality(s) => s.retired = true,
            Entry::Meddra(t) => t.retired = true,
        }
        self
    }

    /// The entry's body as stored (JSON of the inner struct; the kind is stored beside it).
    pub fn body(&self) -> serde_json::Value {
        let value = match self {
            Entry::Disease(d) => serde_json::to_value(d),
            Entry::Drug(d) => serde_json::to_value(d),
            Entry::Speciality(s) => serde_json::to_value(s),
            Entry::Meddra(t) => serde_json::to_value(t),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    /// Decodes a stored body of `kind`.
    pub fn from_body(kind: EntryKind, body: serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            EntryKind::Disease => Entry::Disease(serde_json::from_value(body)?),
            EntryKind::Drug => Entry::Drug(serde_json::from_value(body)?),
            EntryKind::Speciality => Entry::Speciality(serde_json::from_value(body)?),
            EntryKind::MeddraSoc | EntryKind::MeddraPt | EntryKind::MeddraLlt => {
                Entry::Meddra(serde_json::from_value(body)?)
            }
        })
    }
}

/// One file of a release, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What an import parsed, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseContent {
    pub source: Source,
    pub version: String,
    pub release_date: Option<NaiveDate>,
    pub files: Vec<ReleaseFile>,
    /// Entries by kind and code, each code once per kind.
    pub entries: BTreeMap<(EntryKind, String), Entry>,
}

impl ReleaseContent {
    /// The release's checksum: SHA-256 over its files' names and checksums, in name order, so
    /// the same files give the same release whatever the order they were named in.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut files: Vec<&ReleaseFile> = self.files.iter().collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut h = Sha256::new();
        h.update(self.source.code().as_bytes());
        for f in files {
            h.update(b"\n");
            h.update(f.name.as_bytes());
            h.update(b" ");
            h.update(f.sha256.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Entries per kind: the retired ones and the rest.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for ((kind, _), e) in &self.entries {
            let key = if e.retired() {
                format!("{}_RETIRED", kind.code())
            } else {
                kind.code().to_owned()
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    }
}

/// A recorded release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Order of recording, from 1.
    pub seq: i64,
    pub source: Source,
    pub version: String,
    pub release_date: Option<NaiveDate>,
    pub sha256: String,
    pub files: Vec<ReleaseFile>,
    pub counts: BTreeMap<String, u64>,
    pub imported_at: chrono::DateTime<chrono::Utc>,
    pub imported_by: String,
}

/// Of the recorded releases, the one in force for each kind: the newest imported release of a
/// source supplying it, else the newest shipped one.
pub fn in_force(releases: &[Release]) -> BTreeMap<EntryKind, &Release> {
    let mut out: BTreeMap<EntryKind, &Release> = BTreeMap::new();
    for r in releases {
        for &kind in r.source.kinds() {
            let better = match out.get(&kind) {
                None => true,
                Some(current) => {
                    let imported = r.source != Source::Shipped;
                    let current_imported = current.source != Source::Shipped;
                    (imported, r.seq) > (current_imported, current.seq)
                }
            };
            if better {
                out.insert(kind, r);
            }
        }
    }
    out
}

/// The kinds each release is in force for, by release number (a release replaced for every
/// kind it supplies has none): what the release lists show.
pub fn in_force_for(releases: &[Release]) -> BTreeMap<i64, Vec<EntryKind>> {
    let mut out: BTreeMap<i64, Vec<EntryKind>> = BTreeMap::new();
    for (kind, release) in in_force(releases) {
        out.entry(release.seq).or_default().push(kind);
    }
    out
}

/// The catalogue in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalogue {
    entries: BTreeMap<(EntryKind, String), Entry>,
    /// The release in force per kind (none for a kind no release supplied yet).
    releases: BTreeMap<EntryKind, Release>,
}

impl Catalogue {
    /// The shipped lists as a catalogue (what a registry holds before any import).
    pub fn shipped() -> Self {
        Self {
            entries: shipped_entries(),
            releases: BTreeMap::new(),
        }
    }

    /// The catalogue of the releases in force and their entries.
    pub fn new(releases: BTreeMap<EntryKind, Release>, entries: BTreeMap<(EntryKind, String), Entry>) -> Self {
        Self { entries, releases }
    }

    pub fn release(&self, kind: EntryKind) -> Option<&Release> {
        self.releases.get(&kind)
    }

    /// The highest release number the catalogue was built from (0 for none).
    pub fn last_seq(&self) -> i64 {
        self.releases.values().map(|r| r.seq).max().unwrap_or(0)
    }

    /// Where the entries of `kind` come from, for display (`ORPHADATA 4.1.7 (2025-07-01)`).
    pub fn source_label(&self, kind: EntryKind) -> String {
        match self.releases.get(&kind) {
            None => "none loaded".to_owned(),
            Some(r) if r.source == Source::Shipped => match kind {
                EntryKind::Disease => reference::source_of(reference::DISEASES_CSV).to_owned(),
                _ => reference::source_of(reference::DRUGS_CSV).to_owned(),
            },
            Some(r) => match r.release_date {
                Some(d) => format!("{} {} ({d}), release {}", r.source.code(), r.version, r.seq),
                None => format!("{} {}, release {}", r.source.code(), r.version, r.seq),
            },
        }
    }

    pub fn entry(&self, kind: EntryKind, code: &str) -> Option<&Entry> {
        self.entries.get(&(kind, code.to_owned()))
    }

    /// Entries of `kind` in code order, retired ones included.
    pub fn entries(&self, kind: EntryKind) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|((_, code), e)| (code.as_str(), e))
    }

    pub fn disease(&self, orpha_code: &str) -> Option<&Disease> {
        match self.entry(EntryKind::Disease, orpha_code) {
            Some(Entry::Disease(d)) => Some(d),
            _ => None,
        }
    }

    pub fn drug(&self, atc: &str) -> Option<&Drug> {
        match self.entry(EntryKind::Drug, atc) {
            Some(Entry::Drug(d)) => Some(d),
            _ => None,
        }
    }

    pub fn speciality(&self, cis: &str) -> Option<&Speciality> {
        match self.entry(EntryKind::Speciality, cis) {
            Some(Entry::Speciality(s)) => Some(s),
            _ => None,
        }
    }

    pub fn meddra(&self, kind: EntryKind, code: &str) -> Option<&MeddraTerm> {
        match self.entry(kind, code) {
            Some(Entry::Meddra(t)) => Some(t),
            _ => None,
        }
    }

    pub fn diseases(&self) -> impl Iterator<Item = (&str, &Disease)> {
        self.entries(EntryKind::Disease).filter_map(|(c, e)| match e {
            Entry::Disease(d) => Some((c, d)),
            _ => None,
        })
    }

    pub fn drugs(&self) -> impl Iterator<Item = (&str, &Drug)> {
        self.entries(EntryKind::Drug).filter_map(|(c, e)| match e {
            Entry::Drug(d) => Some((c, d)),
            _ => None,
        })
    }

    /// Records under `field` why `code` may not be named in new input: unknown to every
    /// release, or retired by the one in force.
    pub fn check_disease(&self, v: &mut Violations, field: &str, code: &OrphaCode) {
        match self.disease(code.as_str()) {
            None => v.push(
                field,
                "UNKNOWN_CODE",
                "is not an ORPHA code of the reference release in force",
            ),
            Some(d) if d.retired => v.push(
                field,
                "RETIRED_CODE",
                "is an ORPHA code retired by the reference release in force (records naming it stay readable)",
            ),
            Some(_) => {}
        }
    }

    /// Like [`Self::check_disease`], for a drug.
    pub fn check_drug(&self, v: &mut Violations, field: &str, atc: &Atc) {
        match self.drug(atc.as_str()) {
            None => v.push(field, "UNKNOWN_CODE", "is not a drug of the reference release in force"),
            Some(d) if d.retired => v.push(
                field,
                "RETIRED_CODE",
                "is a drug retired by the reference release in force (records naming it stay readable)",
            ),
            Some(_) => {}
        }
    }

    /// Like [`Self::check_disease`], for a MedDRA term of `kind` (SOC, PT or LLT): checked only
    /// once a MedDRA release is in force (MedDRA is licensed and ships with no registry; until
    /// an organisation imports its own, MedDRA codes are checked by format only).
    pub fn check_meddra(&self, v: &mut Violations, field: &str, kind: EntryKind, code: &str) {
        if !self.releases.contains_key(&kind) {
            return;
        }
        match self.meddra(kind, code) {
            None => v.push(
                field,
                "UNKNOWN_CODE",
                format!(
                    "is not a MedDRA {} of the release in force",
                    kind.code().trim_start_matches("MEDDRA_")
                ),
            ),
            Some(t) if t.retired => v.push(
                field,
                "RETIRED_CODE",
                "is a MedDRA term retired by the release in force (records naming it stay readable)",
            ),
            Some(_) => {}
        }
    }

    /// The content to record for a new release `next` of a source: `next`'s entries, the
    /// curated fields they lack carried over from the entries in force (a disease's filière, a
    /// drug's brand, CIS and followed flag), and every code in force for the kinds `next`
    /// supplies that `next` dropped, carried as retired.
    pub fn successor(&self, mut next: ReleaseContent) -> ReleaseContent {
        for &kind in next.source.kinds() {
            for (code, previous) in self.entries(kind) {
                match next.entries.get_mut(&(kind, code.to_owned())) {
                    Some(entry) => carry_curated(entry, previous),
                    None => {
                        next.entries.insert((kind, code.to_owned()), previous.clone().retire());
                    }
                }
            }
        }
        next
    }
}

fn carry_curated(entry: &mut Entry, previous: &Entry) {
    match (entry, previous) {
        (Entry::Disease(d), Entry::Disease(p)) if d.filiere.is_none() => d.filiere = p.filiere.clone(),
        (Entry::Drug(d), Entry::Drug(p)) => {
            if d.brand.is_empty() {
                d.brand = p.brand.clone();
            }
            if d.cis.is_none() {
                d.cis = p.cis.clone();
            }
            d.followed |= p.followed;
            d.single_administration |= p.single_administration;
        }
        _ => {}
    }
}

/// The shipped diseases and drugs as release entries.
pub fn shipped_entries() -> BTreeMap<(EntryKind, String), Entry> {
    let mut entries = BTreeMap::new();
    for d in reference::DISEASES.iter() {
        let icd10 = Some(d.icd10)
            .filter(|c| !c.is_empty())
            .map(|c| Icd10Mapping {
                code: c.to_owned(),
                relation: String::new(),
            })
            .into_iter()
            .collect();
        entries.insert(
            (EntryKind::Disease, d.orpha_code.to_owned()),
            Entry::Disease(Disease {
                name: d.name.to_owned(),
                synonyms: Vec::new(),
                icd10,
                filiere: Some(d.filiere.to_owned()).filter(|f| !f.is_empty()),
                entity_type: String::new(),
                confirmed: d.confirmed,
                retired: false,
            }),
        );
    }
    for d in reference::DRUGS.iter() {
        entries.insert(
            (EntryKind::Drug, d.atc.to_owned()),
            Entry::Drug(Drug {
                name: d.inn.to_owned(),
                brand: d.brand.to_owned(),
                cis: d.cis.map(str::to_owned),
                followed: true,
                single_administration: d.single_administration,
                confirmed: d.confirmed,
                retired: false,
            }),
        );
    }
    entries
}

/// The shipped lists as a release to record: source SHIPPED, version and files from the
/// embedded files' headers and checksums.
pub fn shipped_release() -> ReleaseContent {
    use sha2::{Digest, Sha256};
    let file = |name: &str, text: &str| ReleaseFile {
        name: name.to_owned(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
        bytes: text.len() as u64,
    };
    // The first word of a file's `# version:` line (`2026-11`).
    let version = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("# version:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("")
            .to_owned()
    };
    ReleaseContent {
        source: Source::Shipped,
        version: match (version(reference::DISEASES_CSV), version(reference::DRUGS_CSV)) {
            (d, r) if d == r => d,
            (d, r) => format!("{d} / {r}"),
        },
        release_date: None,
        files: vec![
            file("diseases.csv", reference::DISEASES_CSV),
            file("drugs.csv", reference::DRUGS_CSV),
        ],
        entries: shipped_entries(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(seq: i64, source: Source) -> Release {
        Release {
            seq,
            source,
            version: seq.to_string(),
            release_date: None,
            sha256: String::new(),
            files: Vec::new(),
            counts: BTreeMap::new(),
            imported_at: chrono::DateTime::UNIX_EPOCH,
            imported_by: "test".into(),
        }
    }

    #[test]
    fn an_imported_release_outranks_a_later_shipped_one() {
        let releases = [
            release(1, Source::Shipped),
            release(2, Source::Orphadata),
            release(3, Source::Shipped),
            release(4, Source::Meddra),
        ];
        let f = in_force(&releases);
        assert_eq!(f[&EntryKind::Disease].seq, 2);
        assert_eq!(f[&EntryKind::Drug].seq, 3);
        assert_eq!(f[&EntryKind::MeddraLlt].seq, 4);
        assert!(!f.contains_key(&EntryKind::Speciality));
    }

    #[test]
    fn a_successor_retires_dropped_codes_and_keeps_curated_fields() {
        let shipped = Catalogue::shipped();
        let mut entries = BTreeMap::new();
        entries.insert(
            (EntryKind::Disease, "98878".to_owned()),
            Entry::Disease(Disease {
                name: "Hemophilia A".into(),
                synonyms: vec!["Factor VIII deficiency".into()],
                icd10: Vec::new(),
                filiere: None,
                entity_type: "Disease".into(),
                confirmed: true,
                retired: false,
            }),
        );
        let next = shipped.successor(ReleaseContent {
            source: Source::Orphadata,
            version: "test".into(),
            release_date: None,
            files: Vec::new(),
            entries,
        });
        let catalogue = Catalogue::new(BTreeMap::new(), next.entries.clone());
        let kept = catalogue.disease("98878").expect("kept");
        assert_eq!(kept.filiere.as_deref(), Some("MHEMO"));
        assert!(!kept.retired);
        let dropped = catalogue.disease("70").expect("dropped code still known");
        assert!(dropped.retired);
        assert_eq!(dropped.name, "Proximal spinal muscular atrophy");
        // Drugs are not supplied by an Orphadata release: none carried.
        assert!(catalogue.drug("B02BX06").is_none());
        assert_eq!(next.counts()["DISEASE"], 1);

        let mut v = Violations::new();
        catalogue.check_disease(&mut v, "indication", &OrphaCode::parse("70").expect("format"));
        catalogue.check_disease(&mut v, "other", &OrphaCode::parse("12345").expect("format"));
        catalogue.check_disease(&mut v, "ok", &OrphaCode::parse("98878").expect("format"));
        let reasons: Vec<_> = v.as_slice().iter().map(|x| (x.field.as_str(), x.reason)).collect();
        assert_eq!(reasons, [("indication", "RETIRED_CODE"), ("other", "UNKNOWN_CODE")]);
    }

    #[test]
    fn the_checksum_ignores_the_order_files_were_named_in() {
        let mut a = shipped_release();
        let b = a.clone();
        a.files.reverse();
        assert_eq!(a.sha256(), b.sha256());
        let body = Entry::Disease(Catalogue::shipped().disease("70").expect("shipped").clone());
        assert_eq!(
            Entry::from_body(EntryKind::Disease, body.body()).expect("decodes"),
            body
        );
    }
}
