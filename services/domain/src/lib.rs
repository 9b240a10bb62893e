//! Domain of the treatment access observatory: typed codes, records, pathways, lifecycle state
//! machines and validation rules.
//!
//! Architecture invariant: this crate depends on nothing else in the workspace and does no IO.
//! The clock comes in as a `today` argument, reference lists are embedded at compile time.

pub mod access;
pub mod catalogue;
pub mod codes;
pub mod corrections;
pub mod error;
pub mod lifecycle;
pub mod merge;
pub mod model;
pub mod pseudonym;
pub mod rcp;
pub mod reference;
pub mod reference_files;
pub mod registration;
pub mod schedule;
pub mod treatment_corrections;
pub mod worklist;

pub use error::{CodeError, DomainError, FieldViolation, Violations};
