//! What differs between kinds of records: their table and the typed columns copied from the
//! record beside its JSON body. Everything else (versioning, history, paging) is shared.

use base64::Engine;
use chrono::NaiveDate;
use observatory_domain::access::Scope;
use observatory_domain::model::{
    AdverseEvent, Authorisation, Centre, Cohort, Episode, FollowUp, Framework, Patient, Prescriber, RecordKind,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{PageRequest, Record, Result, StoreError, Versioned};

/// A typed column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(Option<String>),
    Date(Option<NaiveDate>),
    Bool(bool),
}

fn text(s: impl AsRef<str>) -> Val {
    Val::Text(Some(s.as_ref().to_owned()))
}

fn opt_text<S: AsRef<str>>(s: Option<S>) -> Val {
    Val::Text(s.map(|s| s.as_ref().to_owned()))
}

/// A centre's filières as its `filieres` column holds them: each code between bars
/// (`|FILNEMUS|MHEMO|`), so that one is found with `LIKE '%|CODE|%'` on both databases.
pub fn filiere_list(filieres: &[observatory_domain::codes::Filiere]) -> String {
    let mut s = String::from("|");
    for f in filieres {
        s.push_str(f.as_str());
        s.push('|');
    }
    s
}

/// A kind of versioned record.
pub trait Stored: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    const KIND: RecordKind;
    /// Typed columns of `<table>`, beside the common ones.
    fn columns(&self) -> Vec<(&'static str, Val)>;
    fn into_record(v: Versioned<Self>) -> Record;
}

/// Table holding the versions of a kind. A closed list of static names: the only identifiers
/// ever formatted into SQL.
pub fn table(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Centre => "centre_versions",
        RecordKind::Prescriber => "prescriber_versions",
        RecordKind::Framework => "framework_versions",
        RecordKind::Cohort => "cohort_versions",
        RecordKind::Patient => "patient_versions",
        RecordKind::Episode => "episode_versions",
        RecordKind::Authorisation => "authorisation_versions",
        RecordKind::FollowUp => "follow_up_versions",
        RecordKind::AdverseEvent => "adverse_event_versions",
    }
}

impl Stored for Centre {
    const KIND: RecordKind = RecordKind::Centre;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("region_code", text(&self.region)),
            // The first filière (the column predates centres of several), and all of them.
            ("filiere", opt_text(self.first_filiere())),
            ("filieres", text(filiere_list(&self.filieres))),
            ("centre_type", text(self.centre_type.code())),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::Centre(v)
    }
}

impl Stored for Prescriber {
    const KIND: RecordKind = RecordKind::Prescriber;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![("centre_finess", text(&self.centre_finess))]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::Prescriber(v)
    }
}

impl Stored for Framework {
    const KIND: RecordKind = RecordKind::Framework;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("pathway", text(self.pathway.code())),
            ("drug_atc", text(&self.drug_atc)),
            ("status", text(self.status.code())),
            ("valid_from", Val::Date(Some(self.valid_from))),
            ("valid_to", Val::Date(self.valid_to)),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::Framework(v)
    }
}

impl Stored for Cohort {
    const KIND: RecordKind = RecordKind::Cohort;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("pathway", text(self.pathway.code())),
            ("drug_atc", text(&self.drug_atc)),
            ("filiere", text(&self.filiere)),
            ("framework_id", opt_text(self.framework_id.as_ref().map(|f| f.as_str()))),
            ("status", text(self.status.code())),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::Cohort(v)
    }
}

impl Stored for Patient {
    const KIND: RecordKind = RecordKind::Patient;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("pseudonym", text(&self.pseudonym.value)),
            ("pseudonym_kind", text(self.pseudonym.kind.code())),
            ("sex", text(self.sex.code())),
            ("birth_year_month", text(self.birth_year_month.to_string())),
            ("region_code", opt_text(self.region.as_ref())),
            ("vital_status", text(self.vital_status.code())),
            ("objects_to_reuse", Val::Bool(self.objects_to_reuse)),
            ("merged_into", opt_text(self.merged_into.as_ref().map(|m| m.as_str()))),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::Patient(v)
    }
}

impl Stored for Episode {
    const KIND: RecordKind = RecordKind::Episode;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("patient_id", text(self.patient_id.as_str())),
            ("cohort_id", text(self.cohort_id.as_str())),
            ("pathway", text(self.pathway.code())),
            ("drug_atc", text(&self.drug_atc)),
            ("indication_orpha_code", text(&self.indication)),
            ("prescriber_rpps", text(&self.prescriber_rpps)),
            ("centre_finess", text(&self.centre_finess)),
            ("framework_id", opt_text(self.framework_id.as_ref().map(|f| f.as_str()))),
            (
                "authorisation_id",
                opt_text(self.authorisation_id.as_ref().map(|f| f.as_str())),
            ),
            ("status", text(self.status.code())),
            ("request_date", Val::Date(Some(self.request_date))),
            ("decision_date", Val::Date(self.decision_date)),
            ("first_administration_date", Val::Date(self.first_administration_date)),
            ("end_date", Val::Date(self.end_date)),
            ("stop_reason", opt_text(self.stop_reason.map(|r| r.code()))),
            (
                "previous_episode_id",
                opt_text(self.previous_episode_id.as_ref().map(|f| f.as_str())),
            ),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::Episode(v)
    }
}

impl Stored for Authorisation {
    const KIND: RecordKind = RecordKind::Authorisation;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("episode_id", text(self.episode_id.as_str())),
            ("patient_id", text(self.patient_id.as_str())),
            ("status", text(self.status.code())),
            ("submitted_date", Val::Date(Some(self.submitted_date))),
            ("decision_date", Val::Date(self.decision_date)),
            ("valid_from", Val::Date(self.valid_from)),
            ("valid_to", Val::Date(self.valid_to)),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::Authorisation(v)
    }
}

impl Stored for FollowUp {
    const KIND: RecordKind = RecordKind::FollowUp;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("episode_id", text(self.episode_id.as_str())),
            ("visit_date", Val::Date(Some(self.visit_date))),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::FollowUp(v)
    }
}

impl Stored for AdverseEvent {
    const KIND: RecordKind = RecordKind::AdverseEvent;
    fn columns(&self) -> Vec<(&'static str, Val)> {
        vec![
            ("episode_id", text(self.episode_id.as_str())),
            ("onset_date", Val::Date(Some(self.onset_date))),
            ("meddra_pt_code", text(&self.meddra_pt)),
            ("serious", Val::Bool(self.serious)),
        ]
    }
    fn into_record(v: Versioned<Self>) -> Record {
        Record::AdverseEvent(v)
    }
}

/// Filters of a list over current versions, keyset-paged by id.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filters: Vec<(&'static str, Filter)>,
    pub size: u32,
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Filter {
    Eq(String),
    /// The (boolean) column is true.
    IsTrue,
    DateFrom(NaiveDate),
    DateTo(NaiveDate),
    /// The column is one of these (none: no row).
    In(Vec<String>),
    /// Episodes at one of these centres or in a cohort of one of these filières: those a
    /// scope covers (see `observatory_domain::access::Scope::covers`).
    EpisodesWithin {
        centres: Vec<String>,
        filieres: Vec<String>,
    },
    /// Patients enrolled at one of these centres or in one of these filières, or with an
    /// episode there: those a scope covers (see `Store::reach` for where a patient belongs).
    PatientsWithin {
        centres: Vec<String>,
        filieres: Vec<String>,
    },
    /// Authorisations of the episodes a scope covers (the column holds the episode's id).
    AuthorisationsWithin {
        centres: Vec<String>,
        filieres: Vec<String>,
    },
    /// Patients with a current episode in this cohort.
    PatientsInCohort(String),
    /// The column is NULL.
    IsNull,
    /// Records of an episode (the column holds the episode's id) of this cohort.
    EpisodesOfCohort(String),
    /// Centres of this filière (one of theirs): the `filieres` column names it, or, for
    /// versions written before that column, the `filiere` column is it.
    CentresOfFiliere(String),
    /// Patients with a current episode of this pathway and/or status (at least one given).
    PatientsWithEpisode {
        pathway: Option<String>,
        status: Option<String>,
    },
}

impl ListQuery {
    pub fn new(page: &PageRequest) -> Result<Self> {
        let after = match page.token.as_deref() {
            None | Some("") => None,
            Some(t) => Some(decode_token(t)?),
        };
        Ok(Self {
            filters: Vec::new(),
            size: page.size.clamp(1, 500),
            after,
        })
    }

    pub fn eq(&mut self, column: &'static str, value: Option<String>) {
        if let Some(v) = value {
            self.filters.push((column, Filter::Eq(v)));
        }
    }

    /// Only the cohorts whose catalogue entries `scope` may read.
    pub fn cohorts_within(&mut self, scope: &Scope) {
        if let Some(filieres) = scope.cohort_filieres() {
            let filieres = filieres.iter().map(|f| f.as_str().to_owned()).collect();
            self.filters.push(("filiere", Filter::In(filieres)));
        }
    }

    /// Only the episodes `scope` covers.
    pub fn episodes_within(&mut self, scope: &Scope) {
        let centres = scope.centres().iter().map(|c| c.as_str().to_owned()).collect();
        let filieres = scope.filieres().iter().map(|f| f.as_str().to_owned()).collect();
        self.filters
            .push(("centre_finess", Filter::EpisodesWithin { centres, filieres }));
    }

    /// Only the authorisations (or other records of an episode, by their `episode_id`: adverse
    /// events) of the episodes `scope` covers.
    pub fn authorisations_within(&mut self, scope: &Scope) {
        let centres = scope.centres().iter().map(|c| c.as_str().to_owned()).collect();
        let filieres = scope.filieres().iter().map(|f| f.as_str().to_owned()).collect();
        self.filters
            .push(("episode_id", Filter::AuthorisationsWithin { centres, filieres }));
    }

    /// Only the patients `scope` covers.
    pub fn patients_within(&mut self, scope: &Scope) {
        let centres = scope.centres().iter().map(|c| c.as_str().to_owned()).collect();
        let filieres = scope.filieres().iter().map(|f| f.as_str().to_owned()).collect();
        self.filters.push(("id", Filter::PatientsWithin { centres, filieres }));
    }

    /// Only the patients with a current episode in `cohort`.
    pub fn patients_in_cohort(&mut self, cohort: Option<String>) {
        if let Some(c) = cohort {
            self.filters.push(("id", Filter::PatientsInCohort(c)));
        }
    }

    pub fn date_between(&mut self, column: &'static str, from: Option<NaiveDate>, to: Option<NaiveDate>) {
        if let Some(from) = from {
            self.filters.push((column, Filter::DateFrom(from)));
        }
        if let Some(to) = to {
            self.filters.push((column, Filter::DateTo(to)));
        }
    }
}

const TOKEN_PREFIX: &str = "after:";

pub fn encode_token(last_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{last_id}"))
}

pub(crate) fn decode_token(token: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::BadPageToken)?;
    let s = String::from_utf8(bytes).map_err(|_| StoreError::BadPageToken)?;
    s.strip_prefix(TOKEN_PREFIX)
        .filter(|id| !id.is_empty() && id.len() <= 64)
        .map(str::to_owned)
        .ok_or(StoreError::BadPageToken)
}
