//! Who calls: roles, the principal a bearer token stands for, the scope it is bound to, and
//! whether a record is within that scope.
//!
//! The rules saying which role may call which RPC live in one table in the gRPC crate; what a
//! principal is bound to (centres, filières), and what it may therefore reach, is decided here,
//! without IO: the store finds where a record belongs (its [`Reach`]), these rules say whether a
//! scope covers it.

use std::{collections::BTreeSet, fmt};

use crate::codes::{Filiere, Finess};

/// What a principal may do, by the job it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Declares and follows treatments of patients at its centres.
    Prescriber,
    /// Reads and corrects records across a filière.
    DataManager,
    /// Runs and reads reports of a filière; never reads a patient-level record.
    Analyst,
    /// A partner system bound to centres or a filière: bulk import and change feeds.
    Partner,
    /// Reference data, frameworks, tokens; no clinical writes.
    Admin,
    /// Runs and reads reports of every filière, national ones included (the coordination of
    /// the rare-disease networks, the ministry's and agencies' analysts); never a patient-level
    /// record. Bound to no centre or filière.
    NationalAnalyst,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Prescriber,
        Role::DataManager,
        Role::Analyst,
        Role::NationalAnalyst,
        Role::Partner,
        Role::Admin,
    ];

    /// Name on the command line and in the database.
    pub fn code(self) -> &'static str {
        match self {
            Role::Prescriber => "prescriber",
            Role::DataManager => "data_manager",
            Role::Analyst => "analyst",
            Role::Partner => "partner",
            Role::Admin => "admin",
            Role::NationalAnalyst => "national_analyst",
        }
    }

    /// Reads a role by its code (`data-manager` too, as people type it).
    pub fn from_code(code: &str) -> Option<Role> {
        let code = code.replace('-', "_");
        Role::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a principal cannot be bound as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("a prescriber token is bound to at least one centre (--centre)")]
    PrescriberWithoutCentre,
    #[error("a prescriber token is bound to centres only, not to a filière")]
    PrescriberWithFiliere,
    #[error("a {0} token is bound to at least one filière (--filiere)")]
    MissingFiliere(Role),
    #[error("a {0} token is bound to filières only, not to centres")]
    CentreNotAllowed(Role),
    #[error("a partner token is bound to centres or to filières (--centre or --filiere)")]
    PartnerUnbound,
    #[error("an admin token is not bound to centres or filières")]
    AdminBound,
    #[error("a national_analyst token reaches every filière: it is not bound to centres or filières")]
    NationalBound,
}

impl ScopeError {
    /// The field of a token request the fault is in: `centres` or `filieres`.
    pub fn field(&self) -> &'static str {
        match self {
            ScopeError::PrescriberWithoutCentre | ScopeError::CentreNotAllowed(_) | ScopeError::PartnerUnbound => {
                "centres"
            }
            ScopeError::AdminBound | ScopeError::NationalBound => "centres",
            ScopeError::PrescriberWithFiliere | ScopeError::MissingFiliere(_) => "filieres",
        }
    }
}

/// Centres and filières a principal is bound to. Checked against its role when built, so a
/// prescriber always has a centre and an analyst always a filière.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    centres: Vec<Finess>,
    filieres: Vec<Filiere>,
    /// Every filière, for what is not patient-level: cohorts and report runs (a national
    /// analyst's scope).
    national: bool,
}

impl Scope {
    pub fn new(role: Role, mut centres: Vec<Finess>, mut filieres: Vec<Filiere>) -> Result<Scope, ScopeError> {
        centres.sort();
        centres.dedup();
        filieres.sort();
        filieres.dedup();
        match role {
            Role::Prescriber if centres.is_empty() => return Err(ScopeError::PrescriberWithoutCentre),
            Role::Prescriber if !filieres.is_empty() => return Err(ScopeError::PrescriberWithFiliere),
            Role::DataManager | Role::Analyst if filieres.is_empty() => return Err(ScopeError::MissingFiliere(role)),
            Role::DataManager | Role::Analyst if !centres.is_empty() => return Err(ScopeError::CentreNotAllowed(role)),
            Role::Partner if centres.is_empty() && filieres.is_empty() => return Err(ScopeError::PartnerUnbound),
            Role::Admin if !centres.is_empty() || !filieres.is_empty() => return Err(ScopeError::AdminBound),
            Role::NationalAnalyst if !centres.is_empty() || !filieres.is_empty() => {
                return Err(ScopeError::NationalBound);
            }
            _ => {}
        }
        Ok(Scope {
            centres,
            filieres,
            national: role == Role::NationalAnalyst,
        })
    }

    /// Whether the scope reaches the cohorts and report runs of every filière. It covers no
    /// patient-level record ([`Scope::covers`]).
    pub fn national(&self) -> bool {
        self.national
    }

    /// Whether report runs limited to `filiere` (`None`: national runs) may be read.
    pub fn reads_runs_of(&self, filiere: Option<&str>) -> bool {
        self.national || filiere.is_some_and(|f| self.filieres.iter().any(|s| s.as_str() == f))
    }

    pub fn centres(&self) -> &[Finess] {
        &self.centres
    }

    pub fn filieres(&self) -> &[Filiere] {
        &self.filieres
    }

    /// Whether a record that belongs where `reach` says is within this scope: one of its
    /// centres is a centre of the scope, or one of its filières a filière of the scope. A
    /// record that belongs nowhere (or does not exist) is within no scope.
    pub fn covers(&self, reach: &Reach) -> bool {
        self.centres.iter().any(|c| reach.centres.contains(c))
            || self.filieres.iter().any(|f| reach.filieres.contains(f))
    }

    /// Whether the cohort catalogue entries of `filiere` may be read. A cohort names a drug,
    /// an indication and a framework, not a patient: callers bound to centres (prescribers,
    /// partner systems of a hospital) read every cohort, since a centre may treat patients of
    /// any filière; callers bound to filières only read those of their filières.
    pub fn reads_cohorts_of(&self, filiere: &Filiere) -> bool {
        self.national || !self.centres.is_empty() || self.filieres.contains(filiere)
    }

    /// The filières whose cohorts a list may show: `None` for every filière (a scope with
    /// centres), the scope's filières otherwise. Mirrors [`Scope::reads_cohorts_of`].
    pub fn cohort_filieres(&self) -> Option<&[Filiere]> {
        (self.centres.is_empty() && !self.national).then_some(self.filieres.as_slice())
    }
}

/// Where a record belongs, as far as access goes.
///
/// - An episode belongs to its centre and to the filière of its cohort.
/// - A patient belongs to the centres or filières of the token that registered it (its
///   enrolment), and to the centres and filières of all its episodes (a patient registered
///   before enrolments were recorded, without an episode yet, belongs nowhere).
/// - Authorisations, follow-ups and adverse events belong where their episode does.
/// - A cohort belongs to its filière, and so does a report run limited to a filière (a run over
///   every filière belongs to none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    pub centres: BTreeSet<Finess>,
    pub filieres: BTreeSet<Filiere>,
}

impl Reach {
    /// Where one episode, or a new one, belongs.
    pub fn episode(centre: Finess, cohort_filiere: Filiere) -> Reach {
        Reach {
            centres: BTreeSet::from([centre]),
            filieres: BTreeSet::from([cohort_filiere]),
        }
    }

    /// Where a filière-level object (a cohort, a report run) belongs.
    pub fn filiere(filiere: Filiere) -> Reach {
        Reach {
            centres: BTreeSet::new(),
            filieres: BTreeSet::from([filiere]),
        }
    }

    /// Adds where another record belongs (a patient's reach is that of all its episodes).
    pub fn extend(&mut self, other: Reach) {
        self.centres.extend(other.centres);
        self.filieres.extend(other.filieres);
    }
}

/// The caller of an RPC, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Public id of the token (never its secret).
    pub token_id: String,
    pub role: Role,
    pub scope: Scope,
}

impl Principal {
    /// How the principal is recorded as the author of a write or a read: role and token id,
    /// nothing that names a person.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.code(), self.token_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finess() -> Finess {
        Finess::parse("750100125").unwrap()
    }

    fn filiere() -> Filiere {
        Filiere::parse("MHEMO").unwrap()
    }

    #[test]
    fn each_role_is_bound_as_its_job_needs() {
        assert!(Scope::new(Role::Prescriber, vec![finess()], vec![]).is_ok());
        assert_eq!(
            Scope::new(Role::Prescriber, vec![], vec![]),
            Err(ScopeError::PrescriberWithoutCentre)
        );
        assert_eq!(
            Scope::new(Role::Prescriber, vec![finess()], vec![filiere()]),
            Err(ScopeError::PrescriberWithFiliere)
        );
        assert!(Scope::new(Role::Analyst, vec![], vec![filiere()]).is_ok());
        assert_eq!(
            Scope::new(Role::DataManager, vec![], vec![]),
            Err(ScopeError::MissingFiliere(Role::DataManager))
        );
        assert_eq!(
            Scope::new(Role::Analyst, vec![finess()], vec![filiere()]),
            Err(ScopeError::CentreNotAllowed(Role::Analyst))
        );
        assert!(Scope::new(Role::Partner, vec![finess()], vec![]).is_ok());
        assert!(Scope::new(Role::Partner, vec![], vec![filiere()]).is_ok());
        assert_eq!(
            Scope::new(Role::Partner, vec![], vec![]),
            Err(ScopeError::PartnerUnbound)
        );
        assert!(Scope::new(Role::Admin, vec![], vec![]).is_ok());
        assert_eq!(
            Scope::new(Role::Admin, vec![finess()], vec![]),
            Err(ScopeError::AdminBound)
        );
    }

    #[test]
    fn a_scope_covers_what_belongs_to_one_of_its_centres_or_filieres() {
        let other_centre = Finess::parse("690781810").unwrap();
        let other_filiere = Filiere::parse("FILNEMUS").unwrap();
        let prescriber = Scope::new(Role::Prescriber, vec![finess()], vec![]).unwrap();
        let manager = Scope::new(Role::DataManager, vec![], vec![filiere()]).unwrap();
        let partner = Scope::new(Role::Partner, vec![other_centre.clone()], vec![filiere()]).unwrap();

        let here = Reach::episode(finess(), other_filiere.clone());
        let elsewhere_same_filiere = Reach::episode(other_centre.clone(), filiere());
        let elsewhere = Reach::episode(Finess::parse("130783236").unwrap(), other_filiere.clone());
        assert!(prescriber.covers(&here));
        assert!(!prescriber.covers(&elsewhere_same_filiere));
        assert!(!manager.covers(&here));
        assert!(manager.covers(&elsewhere_same_filiere));
        assert!(partner.covers(&elsewhere_same_filiere));
        assert!(!partner.covers(&here));
        for scope in [&prescriber, &manager, &partner] {
            assert!(!scope.covers(&elsewhere));
            assert!(!scope.covers(&Reach::default()), "nowhere is within no scope");
        }

        // A patient seen at two centres is reached from either.
        let mut patient = here.clone();
        patient.extend(elsewhere_same_filiere);
        assert!(prescriber.covers(&patient) && manager.covers(&patient));

        assert!(prescriber.reads_cohorts_of(&other_filiere));
        assert!(manager.reads_cohorts_of(&filiere()) && !manager.reads_cohorts_of(&other_filiere));
        assert_eq!(prescriber.cohort_filieres(), None);
        assert_eq!(manager.cohort_filieres(), Some(&[filiere()][..]));
        assert_eq!(partner.cohort_filieres(), None);
    }

    #[test]
    fn roles_read_back_from_their_codes() {
        for role in Role::ALL {
            assert_eq!(Role::from_code(role.code()), Some(role));
        }
        assert_eq!(Role::from_code("data-manager"), Some(Role::DataManager));
        assert_eq!(Role::from_code("root"), None);
    }

    #[test]
    fn the_actor_names_role_and_token_only() {
        let p = Principal {
            token_id: "0192".into(),
            role: Role::Analyst,
            scope: Scope::new(Role::Analyst, vec![], vec![filiere()]).unwrap(),
        };
        assert_eq!(p.actor(), "analyst:0192");
    }
}
