//! Errors of the domain: field violations for bad input, precondition failures for rules that
//! depend on the state of other records, and illegal lifecycle transitions.

use std::fmt;

/// One bad field: its dotted path in the request, a machine reason and a human description.
///
/// Descriptions never echo the rejected value: it may be an identity field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub reason: &'static str,
    pub description: String,
}

/// Every field violation found in one request; validation collects them all rather than
/// stopping at the first, so a client can fix its request in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, reason: &'static str, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            reason,
            description: description.into(),
        });
    }

    /// Records the error of a parse under `field`, returning the value if it parsed.
    pub fn check<T>(&mut self, field: &str, result: Result<T, CodeError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.push(field, e.reason, e.description);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    /// `Ok(())` when no violation was recorded.
    pub fn into_result(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(self))
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for v in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

/// Why a single value failed to parse; the caller knows the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeError {
    pub reason: &'static str,
    pub description: String,
}

impl CodeError {
    pub fn new(reason: &'static str, description: impl Into<String>) -> Self {
        Self {
            reason,
            description: description.into(),
        }
    }

    pub fn required() -> Self {
        Self::new("REQUIRED", "is required")
    }
}

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for CodeError {}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// Bad input: INVALID_ARGUMENT with the field violations.
    #[error("invalid request: {0}")]
    Invalid(Violations),
    /// The request is well formed but the state of the registry forbids it.
    #[error("{0}")]
    Precondition(String),
    /// A lifecycle transition that the state machine does not allow from the current state.
    #[error("cannot {action} {entity} in state {from}: {from} -> {to} is not a transition of its lifecycle")]
    IllegalTransition {
        entity: &'static str,
        action: &'static str,
        from: &'static str,
        to: &'static str,
    },
}

impl DomainError {
    /// A single violation as an error.
    pub fn invalid(field: impl Into<String>, reason: &'static str, description: impl Into<String>) -> Self {
        let mut v = Violations::new();
        v.push(field, reason, description);
        DomainError::Invalid(v)
    }
}
