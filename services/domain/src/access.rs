//! Who calls: roles, the principal a bearer token stands for, and the scope it is bound to.
//!
//! The rules saying which role may call which RPC live in one table in the gRPC crate; what a
//! principal is bound to (centres, filières) is decided here, without IO.

use std::fmt;

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
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Prescriber,
        Role::DataManager,
        Role::Analyst,
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
}

/// Centres and filières a principal is bound to. Checked against its role when built, so a
/// prescriber always has a centre and an analyst always a filière.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    centres: Vec<Finess>,
    filieres: Vec<Filiere>,
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
            _ => {}
        }
        Ok(Scope { centres, filieres })
    }

    pub fn centres(&self) -> &[Finess] {
        &self.centres
    }

    pub fn filieres(&self) -> &[Filiere] {
        &self.filieres
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
