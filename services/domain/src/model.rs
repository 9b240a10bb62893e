//! The records of the registry and their enumerations.
//!
//! Records are plain data with serde, stored as the JSON body of each version; enumerations
//! serialise as their SCREAMING_SNAKE_CASE codes, which are also the values of the typed
//! columns in the database.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::codes::{Atc, Filiere, Finess, Icd10, IdMr, MeasureCode, MeddraCode, OrphaCode, RegionCode, Rpps};
use crate::error::CodeError;

/// Declares a fieldless enum with stable string codes, used in JSON bodies, typed columns and
/// error messages.
macro_rules! coded_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $code)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }

            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

coded_enum!(
    /// Regulatory pathway under which a drug reaches a patient.
    Pathway {
        Aac = "AAC",
        AapPre = "AAP_PRE",
        AapPost = "AAP_POST",
        Cpc = "CPC",
        OffLabel = "OFF_LABEL",
        Direct = "DIRECT",
        AtuNominative = "ATU_NOMINATIVE",
        AtuCohort = "ATU_COHORT",
        Rtu = "RTU",
        CommonLaw = "COMMON_LAW",
    }
);

impl Pathway {
    /// Per-patient pathways: each episode needs its own authorisation.
    pub fn needs_authorisation(self) -> bool {
        matches!(self, Pathway::Aac | Pathway::AtuNominative)
    }

    /// Indication-level pathways: the cohort must be bound to a framework of this pathway.
    pub fn needs_framework(self) -> bool {
        matches!(
            self,
            Pathway::AapPre | Pathway::AapPost | Pathway::Cpc | Pathway::AtuCohort | Pathway::Rtu | Pathway::Direct
        )
    }

    /// Longest validity of one grant or renewal, in months, where the rules cap it.
    pub fn max_authorisation_months(self) -> Option<u32> {
        match self {
            Pathway::Aac => Some(12),
            _ => None,
        }
    }
}

coded_enum!(CentreType {
    CrmrCoordinating = "CRMR_COORDINATING",
    CrmrConstitutive = "CRMR_CONSTITUTIVE",
    Ccmr = "CCMR",
    Other = "OTHER",
    Crc = "CRC",
});

coded_enum!(FrameworkStatus {
    Submitted = "SUBMITTED",
    UnderReview = "UNDER_REVIEW",
    Granted = "GRANTED",
    Refused = "REFUSED",
    RenewalSubmitted = "RENEWAL_SUBMITTED",
    Renewed = "RENEWED",
    Suspended = "SUSPENDED",
    Withdrawn = "WITHDRAWN",
    Ended = "ENDED",
});

impl FrameworkStatus {
    /// States in which patients may be included under the framework (a pending renewal keeps
    /// the old decision valid).
    pub fn allows_inclusion(self) -> bool {
        matches!(
            self,
            FrameworkStatus::Granted | FrameworkStatus::RenewalSubmitted | FrameworkStatus::Renewed
        )
    }
}

coded_enum!(ProtocolType {
    None = "NONE",
    PutRd = "PUT_RD",
    PutSp = "PUT_SP",
});

coded_enum!(CohortStatus {
    Open = "OPEN",
    Closed = "CLOSED",
});

coded_enum!(Sex {
    Female = "FEMALE",
    Male = "MALE",
    Unknown = "UNKNOWN",
});

coded_enum!(VitalStatus {
    Alive = "ALIVE",
    Deceased = "DECEASED",
    Unknown = "UNKNOWN",
});

coded_enum!(DiagnosisStatus {
    InProgress = "IN_PROGRESS",
    Probable = "PROBABLE",
    Confirmed = "CONFIRMED",
    Undetermined = "UNDETERMINED",
});

coded_enum!(PseudonymKind {
    IdMr = "IDMR",
    Hmac = "HMAC",
});

coded_enum!(EpisodeStatus {
    Declared = "DECLARED",
    Initiated = "INITIATED",
    Ongoing = "ONGOING",
    Stopped = "STOPPED",
    Transferred = "TRANSFERRED",
    Switched = "SWITCHED",
    LostToFollowUp = "LOST_TO_FOLLOW_UP",
    Deceased = "DECEASED",
});

coded_enum!(StopReason {
    Inefficacy = "INEFFICACY",
    AdverseEvent = "ADVERSE_EVENT",
    PatientChoice = "PATIENT_CHOICE",
    Death = "DEATH",
    Switch = "SWITCH",
    Pregnancy = "PREGNANCY",
    EndOfAuthorisation = "END_OF_AUTHORISATION",
    CommonLaw = "COMMON_LAW",
    LostToFollowUp = "LOST_TO_FOLLOW_UP",
    Other = "OTHER",
    EndOfFollowUp = "END_OF_FOLLOW_UP",
});

coded_enum!(RcpOpinion {
    Favourable = "FAVOURABLE",
    Unfavourable = "UNFAVOURABLE",
    Deferred = "DEFERRED",
    FavourableWithConditions = "FAVOURABLE_WITH_CONDITIONS",
});

impl RcpOpinion {
    /// The treatment may go ahead (with or without conditions).
    pub fn is_favourable(self) -> bool {
        matches!(self, RcpOpinion::Favourable | RcpOpinion::FavourableWithConditions)
    }
}

coded_enum!(
    /// Which multidisciplinary meeting gave the opinion: the filière's national RCP, or the
    /// centre's local one.
    RcpLevel {
    National = "NATIONAL",
    Local = "LOCAL",
});

coded_enum!(OffLabelAxis {
    Indication = "INDICATION",
    Age = "AGE",
    Dose = "DOSE",
    Route = "ROUTE",
});

coded_enum!(Route {
    Intravenous = "INTRAVENOUS",
    Subcutaneous = "SUBCUTANEOUS",
    Oral = "ORAL",
    Intrathecal = "INTRATHECAL",
    Intramuscular = "INTRAMUSCULAR",
    Other = "OTHER",
});

coded_enum!(AuthorisationStatus {
    Submitted = "SUBMITTED",
    InformationRequested = "INFORMATION_REQUESTED",
    Granted = "GRANTED",
    Refused = "REFUSED",
    RenewalSubmitted = "RENEWAL_SUBMITTED",
    Renewed = "RENEWED",
    Expired = "EXPIRED",
    Suspended = "SUSPENDED",
    Withdrawn = "WITHDRAWN",
    RenewalRefused = "RENEWAL_REFUSED",
});

impl AuthorisationStatus {
    /// States in which the patient may be treated, within the validity: a pending renewal keeps
    /// the grant valid, and so does a refused one until the grant's end.
    pub fn allows_treatment(self) -> bool {
        matches!(
            self,
            AuthorisationStatus::Granted
                | AuthorisationStatus::RenewalSubmitted
                | AuthorisationStatus::Renewed
                | AuthorisationStatus::RenewalRefused
        )
    }
}

coded_enum!(EfficacyAssessment {
    Improved = "IMPROVED",
    Stable = "STABLE",
    Worsened = "WORSENED",
    NotAssessable = "NOT_ASSESSABLE",
});

coded_enum!(Adherence {
    Good = "GOOD",
    Partial = "PARTIAL",
    Poor = "POOR",
    NotAssessed = "NOT_ASSESSED",
});

coded_enum!(AeOutcome {
    Recovered = "RECOVERED",
    Recovering = "RECOVERING",
    NotRecovered = "NOT_RECOVERED",
    RecoveredWithSequelae = "RECOVERED_WITH_SEQUELAE",
    Fatal = "FATAL",
    Unknown = "UNKNOWN",
});

coded_enum!(
    /// ICH E2B(R3) E.i.3.2: why an event is serious.
    SeriousnessCriterion {
        Death = "DEATH",
        LifeThreatening = "LIFE_THREATENING",
        Hospitalisation = "HOSPITALISATION",
        Disability = "DISABILITY",
        CongenitalAnomaly = "CONGENITAL_ANOMALY",
        OtherMedicallyImportant = "OTHER_MEDICALLY_IMPORTANT",
    }
);

coded_enum!(
    /// ICH E2B(R3) G.k.8: what was done with the suspect drug.
    DrugAction {
        Withdrawn = "WITHDRAWN",
        DoseReduced = "DOSE_REDUCED",
        DoseIncreased = "DOSE_INCREASED",
        DoseNotChanged = "DOSE_NOT_CHANGED",
        Unknown = "UNKNOWN",
        NotApplicable = "NOT_APPLICABLE",
    }
);

coded_enum!(
    /// Dechallenge (did the reaction abate when the drug was stopped or reduced?) and
    /// rechallenge (did it recur when the drug was given again?), ICH E2B(R3) G.k.9.i.4.
    ChallengeResult {
        Positive = "POSITIVE",
        Negative = "NEGATIVE",
        Unknown = "UNKNOWN",
        NotDone = "NOT_DONE",
    }
);

coded_enum!(
    /// ICH E2B(R3) C.2.r.4: the qualification of the primary source.
    ReporterQualification {
        Physician = "PHYSICIAN",
        Pharmacist = "PHARMACIST",
        OtherHealthProfessional = "OTHER_HEALTH_PROFESSIONAL",
        Consumer = "CONSUMER",
    }
);

coded_enum!(Causality {
    Related = "RELATED",
    PossiblyRelated = "POSSIBLY_RELATED",
    Unlikely = "UNLIKELY",
    NotRelated = "NOT_RELATED",
    NotAssessable = "NOT_ASSESSABLE",
});

coded_enum!(
    /// The kinds of versioned records, with their table names.
    RecordKind {
        Centre = "CENTRE",
        Prescriber = "PRESCRIBER",
        Framework = "FRAMEWORK",
        Cohort = "COHORT",
        Patient = "PATIENT",
        Episode = "EPISODE",
        Authorisation = "AUTHORISATION",
        FollowUp = "FOLLOW_UP",
        AdverseEvent = "ADVERSE_EVENT",
    }
);

impl RecordKind {
    /// Records about one patient: reading them is a patient-level access, audited as such.
    pub fn is_patient_level(self) -> bool {
        matches!(
            self,
            RecordKind::Patient
                | RecordKind::Episode
                | RecordKind::Authorisation
                | RecordKind::FollowUp
                | RecordKind::AdverseEvent
        )
    }
}

/// Identifier minted by the registry: a lowercase hyphenated UUID (v7, so ids sort by creation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordId(String);

impl RecordId {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(CodeError::required());
        }
        let b = s.as_bytes();
        let ok = b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            });
        if !ok {
            return Err(CodeError::new("BAD_FORMAT", "must be a record id (UUID)"));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// Wraps an id the store just minted (already canonical).
    pub fn from_minted(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<RecordId> for String {
    fn from(value: RecordId) -> String {
        value.0
    }
}

impl TryFrom<String> for RecordId {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, CodeError> {
        Self::parse(&value)
    }
}

/// Year and month of birth, "YYYY-MM": the only birth information the registry keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct YearMonth {
    year: u16,
    month: u8,
}

impl YearMonth {
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(CodeError::required());
        }
        let bad = || CodeError::new("BAD_FORMAT", "must be a year and month YYYY-MM");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: u16 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1900..=2200).contains(&year) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }

    pub fn of(date: NaiveDate) -> Self {
        use chrono::Datelike;
        Self {
            year: u16::try_from(date.year()).unwrap_or(0),
            month: u8::try_from(date.month()).unwrap_or(0),
        }
    }

    pub fn first_day(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(i32::from(self.year), u32::from(self.month), 1)
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl From<YearMonth> for String {
    fn from(value: YearMonth) -> String {
        value.to_string()
    }
}

impl TryFrom<String> for YearMonth {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, CodeError> {
        Self::parse(&value)
    }
}

/// Parses a civil date "YYYY-MM-DD".
pub fn parse_date(raw: &str) -> Result<NaiveDate, CodeError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(CodeError::required());
    }
    let bad = || CodeError::new("BAD_FORMAT", "must be a date YYYY-MM-DD");
    // Exactly four digits of year: chrono alone also takes signed and longer years
    // (`-5000-01-01`, `+275760-09-13`).
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shaped {
        return Err(bad());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())
}

// ---------------------------------------------------------------------------------------------
// Records

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredCentre")]
pub struct Centre {
    pub finess: Finess,
    pub name: String,
    pub centre_type: CentreType,
    pub region: RegionCode,
    /// The filières the centre belongs to (a university hospital site is often a reference or
    /// competence centre of several): at least one, sorted, each once (see [`filiere_set`]).
    pub filieres: Vec<Filiere>,
}

impl Centre {
    /// The first of its filières, in code order: the one a single-filière column or label shows.
    pub fn first_filiere(&self) -> Option<&Filiere> {
        self.filieres.first()
    }
}

/// A centre's body as stored: versions written before a centre could belong to several
/// filières carry one `filiere`; they read back as a centre of that one filière.
#[derive(Deserialize)]
struct StoredCentre {
    finess: Finess,
    name: String,
    centre_type: CentreType,
    region: RegionCode,
    #[serde(default)]
    filiere: Option<Filiere>,
    #[serde(default)]
    filieres: Vec<Filiere>,
}

impl From<StoredCentre> for Centre {
    fn from(s: StoredCentre) -> Centre {
        let mut filieres = s.filieres;
        filieres.extend(s.filiere);
        filieres.sort();
        filieres.dedup();
        Centre {
            finess: s.finess,
            name: s.name,
            centre_type: s.centre_type,
            region: s.region,
            filieres,
        }
    }
}

/// Most filières a centre belongs to: all 23 of them.
pub const MAX_CENTRE_FILIERES: usize = 23;

/// The filières of a centre: at least one, at most [`MAX_CENTRE_FILIERES`], each once (a
/// repeated one is refused rather than silently dropped: it is likely a typing slip); sorted.
pub fn filiere_set(mut filieres: Vec<Filiere>) -> Result<Vec<Filiere>, CodeError> {
    if filieres.is_empty() {
        return Err(CodeError::new("REQUIRED", "a centre belongs to at least one filière"));
    }
    if filieres.len() > MAX_CENTRE_FILIERES {
        return Err(CodeError::new(
            "TOO_MANY",
            format!("a centre belongs to at most {MAX_CENTRE_FILIERES} filières"),
        ));
    }
    filieres.sort();
    if let Some(w) = filieres.windows(2).find(|w| w[0] == w[1]) {
        return Err(CodeError::new("DUPLICATE", format!("filière {} is named twice", w[0])));
    }
    Ok(filieres)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prescriber {
    pub rpps: Rpps,
    pub specialty: String,
    pub centre_finess: Finess,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    pub pathway: Pathway,
    pub drug_atc: Atc,
    pub indication: String,
    pub orpha_codes: Vec<OrphaCode>,
    pub authority: String,
    pub decision_reference: String,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
    pub status: FrameworkStatus,
    pub protocol_type: ProtocolType,
    pub protocol_version: String,
    pub follow_up_months: u32,
    pub source: String,
    pub confirmed: bool,
    /// A declaration under it needs a favourable opinion of a national RCP (risdiplam's cohort
    /// ATU was granted on that condition).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_national_rcp: bool,
    /// Months between two periodic synthesis reports, as the protocol sets them (0: none set).
    /// Periods follow one another from `valid_from`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub synthesis_months: u32,
    /// Where the periods of `synthesis_months` start from when an amendment of the protocol
    /// changed the interval: right after the last period due under the one before. `None`:
    /// `valid_from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis_from: Option<NaiveDate>,
    /// While SUSPENDED: the state it was suspended from, and since when.
    #[serde(default)]
    pub suspended_from: Option<FrameworkStatus>,
    #[serde(default)]
    pub suspended_on: Option<NaiveDate>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One period of a framework's periodic synthesis, bounds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthesisPeriod {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Framework {
    /// The synthesis periods that have ended by `today` (ended: their last day is before
    /// `today`), oldest first: `synthesis_months` after `synthesis_months` from `valid_from` (or
    /// from where an amendment of the protocol started them again), the last one cut at
    /// `valid_to`. Empty when no periodicity is set.
    pub fn ended_synthesis_periods(&self, today: NaiveDate) -> Vec<SynthesisPeriod> {
        let mut periods = Vec::new();
        if self.synthesis_months == 0 {
            return periods;
        }
        let start = self.synthesis_from.unwrap_or(self.valid_from);
        for k in 0u32.. {
            let (Some(from), Some(next)) = (
                start.checked_add_months(chrono::Months::new(k * self.synthesis_months)),
                start.checked_add_months(chrono::Months::new((k + 1) * self.synthesis_months)),
            ) else {
                break;
            };
            if self.valid_to.is_some_and(|end| from > end) {
                break;
            }
            let to = next.pred_opt().unwrap_or(next);
            let to = self.valid_to.map_or(to, |end| to.min(end));
            if to >= today {
                break;
            }
            periods.push(SynthesisPeriod { from, to });
        }
        periods
    }

    /// The period after the last one ended by `today`: the one in progress, or `None` when no
    /// periodicity is set or the framework's validity is over.
    pub fn current_synthesis_period(&self, today: NaiveDate) -> Option<SynthesisPeriod> {
        if self.synthesis_months == 0 {
            return None;
        }
        let from = self
            .ended_synthesis_periods(today)
            .last()
            .map_or(self.synthesis_from.unwrap_or(self.valid_from), |p| {
                p.to.succ_opt().unwrap_or(p.to)
            });
        if self.valid_to.is_some_and(|end| from > end) {
            return None;
        }
        let next = from.checked_add_months(chrono::Months::new(self.synthesis_months))?;
        let to = next.pred_opt().unwrap_or(next);
        Some(SynthesisPeriod {
            from,
            to: self.valid_to.map_or(to, |end| to.min(end)),
        })
    }

    /// Whether patients may be included under this framework on `date`: inside the validity
    /// window of a granted (or renewed, or ended) framework. An ENDED framework still covers
    /// dates before its end; a suspended, refused or withdrawn one, or one still under review,
    /// covers none.
    pub fn valid_on(&self, date: NaiveDate) -> bool {
        let decided = self.status.allows_inclusion() || self.status == FrameworkStatus::Ended;
        decided && self.valid_from <= date && self.valid_to.is_none_or(|end| date <= end)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    pub name: String,
    pub filiere: Filiere,
    pub pathway: Pathway,
    pub drug_atc: Atc,
    pub orpha_codes: Vec<OrphaCode>,
    pub framework_id: Option<RecordId>,
    pub follow_up_months: u32,
    pub status: CohortStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub orpha_code: OrphaCode,
    pub icd10: Option<Icd10>,
    pub status: DiagnosisStatus,
    pub diagnosis_date: Option<NaiveDate>,
    /// The disease's severity, where the registry classifies it (haemophilia A and B).
    #[serde(default, skip_serializing_if = "Severity::is_empty")]
    pub severity: Severity,
}

/// The ORPHA codes whose severity is classed by the residual factor level and inhibitors:
/// haemophilia A and B.
pub const HAEMOPHILIA: [&str; 2] = ["98878", "98879"];

coded_enum!(
    /// Haemophilia severity by residual factor activity: severe below 1 %, moderate 1 to 5 %,
    /// mild above 5 % and below 40 %.
    FactorLevelClass {
        Severe = "SEVERE",
        Moderate = "MODERATE",
        Mild = "MILD",
    }
);

coded_enum!(
    /// Whether the patient has had inhibitors (alloantibodies against the factor).
    InhibitorStatus {
        Never = "NEVER",
        Past = "PAST",
        Current = "CURRENT",
    }
);

/// Disease severity: for haemophilia, the factor level class and the inhibitor status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Severity {
    #[serde(default)]
    pub factor_level_class: Option<FactorLevelClass>,
    #[serde(default)]
    pub inhibitor_status: Option<InhibitorStatus>,
}

impl Severity {
    pub fn is_empty(&self) -> bool {
        self.factor_level_class.is_none() && self.inhibitor_status.is_none()
    }
}

coded_enum!(
    /// How an age at an event is known: before birth, at birth, or in months of age.
    AgeKind {
        Antenatal = "ANTENATAL",
        AtBirth = "AT_BIRTH",
        Months = "MONTHS",
    }
);

/// An age at an event (onset, diagnosis), as the JRC common data elements record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeAt {
    pub kind: AgeKind,
    /// For [`AgeKind::Months`]: the age in completed months, 0 to 1440.
    #[serde(default)]
    pub months: Option<u16>,
}

coded_enum!(
    /// A patient's answer to a request for agreement or consent.
    ConsentStatus {
        Given = "GIVEN",
        Refused = "REFUSED",
        NotAsked = "NOT_ASKED",
    }
);

/// A genetic diagnosis: an HGNC gene symbol and its variants in HGVS nomenclature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genotype {
    pub gene: String,
    pub variants: Vec<String>,
}

/// The common data elements for rare-disease registration (European Commission JRC set) that
/// the rest of the record does not carry. Each may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonDataElements {
    #[serde(default)]
    pub age_at_onset: Option<AgeAt>,
    #[serde(default)]
    pub age_at_diagnosis: Option<AgeAt>,
    /// An undiagnosed case: no diagnosis could be reached after full investigation.
    #[serde(default)]
    pub undiagnosed: bool,
    /// At most [`MAX_GENES`] genes.
    #[serde(default)]
    pub genotype: Vec<Genotype>,
    /// Agreement to be contacted for research.
    #[serde(default)]
    pub contact_for_research: Option<ConsentStatus>,
    /// Consent to the reuse of the data for other research (beside the objection to reuse,
    /// which excludes the patient from analyses).
    #[serde(default)]
    pub reuse_consent: Option<ConsentStatus>,
}

impl CommonDataElements {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Most genes of a genetic diagnosis, and variants per gene.
pub const MAX_GENES: usize = 5;
pub const MAX_VARIANTS: usize = 4;

/// The only link between a registry patient and a person: an IdMR or a keyed HMAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pseudonym {
    pub kind: PseudonymKind,
    /// IdMR digits, or the lowercase hex HMAC-SHA256.
    pub value: String,
}

impl Pseudonym {
    pub fn idmr(idmr: &IdMr) -> Self {
        Self {
            kind: PseudonymKind::IdMr,
            value: idmr.as_str().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub pseudonym: Pseudonym,
    pub sex: Sex,
    pub birth_year_month: YearMonth,
    pub region: Option<RegionCode>,
    pub vital_status: VitalStatus,
    pub objects_to_reuse: bool,
    pub diagnoses: Vec<Diagnosis>,
    /// The JRC common data elements (absent from versions written before they were kept).
    #[serde(default, skip_serializing_if = "CommonDataElements::is_empty")]
    pub cde: CommonDataElements,
    /// The patient's cases put to an RCP, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rcp_reviews: Vec<RcpReview>,
    /// This record was found to be the same person as another and merged into it: it takes no
    /// write any more (see [`crate::merge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<RecordId>,
    /// The records merged into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<RecordId>,
}

/// A patient's case put to a multidisciplinary team meeting (RCP): asked for, then its opinion,
/// which the treatments it concerns link to (`Episode::rcp_review_id`). Kept on the patient
/// record, so every request and opinion is a version of it, in history and in the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RcpReview {
    pub id: RecordId,
    pub level: RcpLevel,
    /// For a national RCP: the filière whose meeting reviews the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filiere: Option<Filiere>,
    /// The centre presenting the case (for a local RCP: the centre whose meeting it is).
    pub centre_finess: Finess,
    /// The treatment the opinion is asked on.
    pub drug_atc: Atc,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indication: Option<OrphaCode>,
    pub requested_on: NaiveDate,
    /// The meeting that gave the opinion (none while awaited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_date: Option<NaiveDate>,
    /// None while awaited; DEFERRED until a later meeting gives another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opinion: Option<RcpOpinion>,
    /// With FAVOURABLE_WITH_CONDITIONS: the conditions, up to 500 characters (never identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<String>,
}

impl RcpReview {
    /// The opinion as a treatment carries it, once given.
    pub fn as_rcp(&self) -> Option<Rcp> {
        Some(Rcp {
            date: self.meeting_date?,
            opinion: self.opinion?,
            level: Some(self.level),
        })
    }
}

/// Most RCP reviews one patient record holds.
pub const MAX_RCP_REVIEWS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rcp {
    pub date: NaiveDate,
    pub opinion: RcpOpinion,
    /// `None`: not said (opinions recorded before the level was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<RcpLevel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffLabelJustification {
    pub axes: Vec<OffLabelAxis>,
    pub evidence_reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dosage {
    pub dose: f64,
    pub unit: String,
    pub frequency: String,
    pub route: Route,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub patient_id: RecordId,
    pub cohort_id: RecordId,
    pub pathway: Pathway,
    pub drug_atc: Atc,
    pub indication: OrphaCode,
    pub prescriber_rpps: Rpps,
    pub centre_finess: Finess,
    pub framework_id: Option<RecordId>,
    pub authorisation_id: Option<RecordId>,
    pub rcp: Option<Rcp>,
    pub off_label: Option<OffLabelJustification>,
    pub dosage: Option<Dosage>,
    pub request_date: NaiveDate,
    pub decision_date: Option<NaiveDate>,
    pub first_administration_date: Option<NaiveDate>,
    pub status: EpisodeStatus,
    pub end_date: Option<NaiveDate>,
    pub stop_reason: Option<StopReason>,
    pub previous_episode_id: Option<RecordId>,
    pub transferred_to: Option<Finess>,
    /// AAC dispensed by the hospital pharmacy before the request (treatment started out of
    /// hours, the request regularised afterwards): the first administration may precede the
    /// grant, and the episode is flagged until the authorisation is decided.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dispense_first: bool,
    /// A one-shot treatment (a gene therapy, as the reference release said of its drug when it
    /// was declared): its first administration is its only one, followed for the long term;
    /// once given, it is not stopped for a reason, its follow-up ends (END_OF_FOLLOW_UP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_administration: bool,
    /// The patient's RCP review whose opinion this treatment follows (its opinion is `rcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcp_review_id: Option<RecordId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorisation {
    pub episode_id: RecordId,
    pub patient_id: RecordId,
    pub pathway: Pathway,
    pub reference: Option<String>,
    pub status: AuthorisationStatus,
    pub submitted_date: NaiveDate,
    pub decision_date: Option<NaiveDate>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub renewals: u32,
    pub suspended_from: Option<AuthorisationStatus>,
}

impl Authorisation {
    /// Whether the patient may be treated under this authorisation on `date`.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.status.allows_treatment()
            && self.valid_from.is_some_and(|from| from <= date)
            && self.valid_to.is_none_or(|to| date <= to)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub code: MeasureCode,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub episode_id: RecordId,
    pub visit_date: NaiveDate,
    pub efficacy: EfficacyAssessment,
    pub measures: Vec<Measure>,
    pub weight_kg: Option<f64>,
    pub adherence: Adherence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdverseEvent {
    pub episode_id: RecordId,
    pub onset_date: NaiveDate,
    pub meddra_pt: MeddraCode,
    pub meddra_soc: Option<MeddraCode>,
    pub serious: bool,
    pub outcome: AeOutcome,
    pub causality: Causality,
    pub pv_declaration_date: Option<NaiveDate>,
    pub pv_reference: Option<String>,
    /// Who the event was declared to: the regional pharmacovigilance centre (CRPV) or the
    /// rights holder's pharmacovigilance, up to 200 characters; only with a declaration date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv_receiver: Option<String>,
    /// What a pharmacovigilance centre needs for a valid case (events recorded before these
    /// fields existed have none).
    #[serde(default, skip_serializing_if = "CaseDetails::is_empty")]
    pub details: CaseDetails,
}

/// The fields of an ICH E2B(R3) individual case that the registry holds besides the event's
/// term, onset, seriousness, outcome and causality.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaseDetails {
    /// Each criterion at most once; a serious event names at least one.
    pub seriousness: Vec<SeriousnessCriterion>,
    /// The end of the reaction (recovered, with sequelae, or the date of death).
    pub end_date: Option<NaiveDate>,
    /// The MedDRA lowest level term the reporter used, under the event's PT.
    pub meddra_llt: Option<MeddraCode>,
    pub action_taken: Option<DrugAction>,
    pub dechallenge: Option<ChallengeResult>,
    pub rechallenge: Option<ChallengeResult>,
    /// The suspect drug's dose, frequency and route when the reaction occurred.
    pub suspect_dosage: Option<Dosage>,
    /// Batch or lot number, up to 35 characters.
    pub batch: Option<String>,
    pub reporter: Option<ReporterQualification>,
    /// The case narrative, up to 2000 characters: clinical course only, never identity.
    pub narrative: Option<String>,
    /// The drug was used outside its marketing authorisation when the reaction occurred.
    pub off_label_use: bool,
}

impl CaseDetails {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_centre_stored_with_one_filiere_reads_back_as_a_centre_of_that_filiere() {
        let legacy = r#"{"finess":"750100125","name":"CHU","centre_type":"CCMR","region":"11","filiere":"MHEMO"}"#;
        let c: Centre = serde_json::from_str(legacy).unwrap();
        assert_eq!(c.filieres, vec![Filiere::parse("MHEMO").unwrap()]);
        // Written again, it carries the list only, and reads back the same.
        let body = serde_json::to_string(&c).unwrap();
        assert!(
            body.contains(r#""filieres":["MHEMO"]"#) && !body.contains(r#""filiere":"#),
            "{body}"
        );
        assert_eq!(serde_json::from_str::<Centre>(&body).unwrap(), c);
    }

    #[test]
    fn a_centres_filieres_are_at_least_one_each_once_and_sorted() {
        let f = |s: &str| Filiere::parse(s).unwrap();
        assert_eq!(
            filiere_set(vec![f("MHEMO"), f("FILNEMUS")]).unwrap(),
            vec![f("FILNEMUS"), f("MHEMO")]
        );
        assert_eq!(filiere_set(vec![]).unwrap_err().reason, "REQUIRED");
        assert_eq!(
            filiere_set(vec![f("MHEMO"), f("MHEMO")]).unwrap_err().reason,
            "DUPLICATE"
        );
        let all: Vec<Filiere> = crate::reference::filieres().map(|(code, _)| f(code)).collect();
        assert_eq!(all.len(), MAX_CENTRE_FILIERES);
        assert!(filiere_set(all).is_ok());
    }

    #[test]
    fn dates_have_four_digit_years_and_nothing_around_them() {
        assert_eq!(
            parse_date("2026-01-12").unwrap(),
            NaiveDate::from_ymd_opt(2026, 1, 12).unwrap()
        );
        assert_eq!(
            parse_date(" 2026-01-12 ").unwrap(),
            NaiveDate::from_ymd_opt(2026, 1, 12).unwrap()
        );
        for bad in [
            "-5000-01-01",
            "+275760-09-13",
            "99999-01-01",
            "2026-1-1",
            "2026-02-30",
            "2026-01-01T00:00:00Z",
            "\u{202e}2026-01-01",
            "２０２６-01-01",
        ] {
            assert_eq!(parse_date(bad).unwrap_err().reason, "BAD_FORMAT", "{bad}");
        }
        assert_eq!(parse_date("").unwrap_err().reason, "REQUIRED");
    }
}
