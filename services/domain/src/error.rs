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

/// Most violations one request reports; past them only a count is kept, so that a request
/// with a million bad values costs the server no more than one with a hundred.
pub const MAX_VIOLATIONS: usize = 100;

/// The field violations found in one request; validation collects them rather than stopping at
/// the first, so a client can fix its request in one go. The first [`MAX_VIOLATIONS`] are kept,
/// then only how many more there were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>, usize);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, reason: &'static str, description: impl Into<String>) {
        if self.0.len() >= MAX_VIOLATIONS {
            self.1 += 1;
            return;
        }
        self.0.push(FieldViolation {
            field: field.into(),
            reason,
            description: description.into(),
        });
    }

    /// Violations found past the first [`MAX_VIOLATIONS`], counted but not kept.
    pub fn omitted(&self) -> usize {
        self.1
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
        if self.1 > 0 {
            write!(f, "; and {} more violations not listed", self.1)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_past_the_cap_are_counted_not_kept() {
        let mut v = Violations::new();
        for i in 0..MAX_VIOLATIONS + 1000 {
            v.push(format!("axes[{i}]"), "BAD_VALUE", "is not a known axis");
        }
        assert_eq!(v.as_slice().len(), MAX_VIOLATIONS);
        assert_eq!(v.omitted(), 1000);
        assert_eq!(v.as_slice().last().map(|f| f.field.as_str()), Some("axes[99]"));
        assert!(v.to_string().ends_with("; and 1000 more violations not listed"));
        assert!(v.into_result().is_err());
    }
}
