//! Observatory reports: the registry as known at a cutoff, as a pseudonymised Parquet snapshot;
//! indicators as pure polars lazy functions over it; small-cell suppression; published tables
//! with a manifest.
//!
//! Architecture invariant: this is the only crate of the workspace that depends on polars, and
//! it reads the registry only through the store's as-of scan.

pub mod html;
pub mod indicators;
pub mod names;
pub mod period;
pub mod report;
pub mod runs;
pub mod snapshot;
pub mod stats;
pub mod suppress;
pub mod synthesis;
pub mod synthesis_doc;
pub mod xlsx;

pub use period::Period;
pub use report::{CsvStyle, ReportManifest, ReportOptions};
