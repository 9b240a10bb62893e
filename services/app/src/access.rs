//! Which roles may make which operation: the one table, checked by the application layer for
//! every caller (gRPC, the import, the web front), and by the gRPC authentication layer before a
//! call reaches a service.

use observatory_domain::access::Role;

use Role::{Admin, Analyst, DataManager, NationalAnalyst, Partner, Prescriber};

const CLINICAL_READERS: &[Role] = &[Prescriber, DataManager, Partner];
const CLINICAL_WRITERS: &[Role] = &[Prescriber, Partner];
const CORRECTORS: &[Role] = &[Prescriber, DataManager, Partner];
const EVERYONE: &[Role] = &[Prescriber, DataManager, Analyst, NationalAnalyst, Partner, Admin];
const REPORTERS: &[Role] = &[Analyst, NationalAnalyst, DataManager];

/// Every operation of the observatory (its service and name, as the gRPC contract has them, or
/// `Tokens` for those no RPC makes) and the roles that may make it. Reference data is readable by
/// every role; reference writes are the admin's; clinical records are read and written by
/// prescribers, partner systems and data managers, never by analysts or admins; reports are
/// run and read by analysts (of their filières, or national ones) and data managers.
pub const OPERATIONS: &[(&str, &str, &[Role])] = &[
    ("ReferenceService", "CreateCentre", &[Admin]),
    ("ReferenceService", "GetCentre", EVERYONE),
    ("ReferenceService", "ListCentres", EVERYONE),
    ("ReferenceService", "UpdateCentre", &[Admin]),
    ("ReferenceService", "CreatePrescriber", &[Admin]),
    ("ReferenceService", "GetPrescriber", EVERYONE),
    ("ReferenceService", "ListPrescribers", EVERYONE),
    ("ReferenceService", "UpdatePrescriber", &[Admin]),
    ("ReferenceService", "ListDrugs", EVERYONE),
    ("ReferenceService", "ListDiseases", EVERYONE),
    ("ReferenceService", "ListReferenceReleases", &[Admin]),
    ("ReferenceService", "CreateFramework", &[Admin]),
    ("ReferenceService", "GetFramework", EVERYONE),
    ("ReferenceService", "TransitionFramework", &[Admin]),
    ("ReferenceService", "ListFrameworks", EVERYONE),
    // Cohorts organise a filière's follow-up: set up by its data managers, read by all who
    // work on it.
    ("RegistryService", "CreateCohort", &[DataManager]),
    (
        "RegistryService",
        "GetCohort",
        &[Prescriber, DataManager, Analyst, NationalAnalyst, Partner],
    ),
    (
        "RegistryService",
        "ListCohorts",
        &[Prescriber, DataManager, Analyst, NationalAnalyst, Partner],
    ),
    ("RegistryService", "TransitionCohort", &[DataManager]),
    ("RegistryService", "RegisterPatient", CLINICAL_WRITERS),
    ("RegistryService", "GetPatient", CLINICAL_READERS),
    ("RegistryService", "ListPatients", CLINICAL_READERS),
    ("RegistryService", "UpdatePatient", CORRECTORS),
    ("RegistryService", "RequestRcpReview", CORRECTORS),
    ("RegistryService", "RecordRcpOpinion", CORRECTORS),
    // Whether two records are one person is a data manager's call, across centres.
    ("RegistryService", "MergePatients", &[DataManager]),
    ("RegistryService", "DeclareEpisode", CLINICAL_WRITERS),
    ("RegistryService", "GetEpisode", CLINICAL_READERS),
    ("RegistryService", "ListEpisodes", CLINICAL_READERS),
    ("RegistryService", "TransitionEpisode", CORRECTORS),
    ("RegistryService", "UpdateEpisode", CORRECTORS),
    ("RegistryService", "GetAuthorisation", CLINICAL_READERS),
    ("RegistryService", "TransitionAuthorisation", CORRECTORS),
    ("RegistryService", "UpdateAuthorisation", CORRECTORS),
    ("RegistryService", "RecordFollowUp", CLINICAL_WRITERS),
    ("RegistryService", "UpdateFollowUp", CORRECTORS),
    ("RegistryService", "RecordAdverseEvent", CLINICAL_WRITERS),
    ("RegistryService", "GetFollowUp", CLINICAL_READERS),
    ("RegistryService", "ListFollowUps", CLINICAL_READERS),
    ("RegistryService", "ListAdverseEvents", CLINICAL_READERS),
    ("RegistryService", "GetAdverseEvent", CLINICAL_READERS),
    ("RegistryService", "UpdateAdverseEvent", CORRECTORS),
    ("RegistryService", "ExportAdverseEvents", CLINICAL_READERS),
    ("RegistryService", "GetHistory", CLINICAL_READERS),
    ("RegistryService", "GetWorklist", CLINICAL_READERS),
    // Exchange with partner systems: an import item needs, besides, the rule of its own
    // RegistryService call; the feed shows the clinical records of the caller's scope.
    ("ExchangeService", "Import", CORRECTORS),
    ("ExchangeService", "WatchChanges", CLINICAL_READERS),
    ("ExchangeService", "ExportFhir", CLINICAL_READERS),
    ("ReportService", "RunReport", REPORTERS),
    ("ReportService", "RunSynthesis", REPORTERS),
    ("ReportService", "GetReportRun", REPORTERS),
    ("ReportService", "ListReportRuns", REPORTERS),
    ("ReportService", "DownloadReportFile", REPORTERS),
    // The trail names who did what to which record: the admin's, like the tokens it names.
    ("AuditService", "ExportAudit", &[Admin]),
    ("AuditService", "VerifyAudit", &[Admin]),
    // The history of reference records and cohorts, for every role that reads them (the admin
    // who corrects a centre reads who changed it); never of a patient-level record. The web
    // front's; over gRPC, GetHistory.
    ("History", "GetReferenceHistory", EVERYONE),
    // Tokens: the admin's, from the web front's admin pages (and the command line, locally).
    // Not RPCs: the gRPC API has no token service.
    ("Tokens", "CreateToken", &[Admin]),
    ("Tokens", "ListTokens", &[Admin]),
    ("Tokens", "RevokeToken", &[Admin]),
    // Reference releases: imported by the admin from the official files, with the command
    // line (`observatory reference import`); not an RPC.
    ("Reference", "ImportReferenceRelease", &[Admin]),
];

/// The roles that may make `operation` (`RegisterPatient`); `None` for an operation with no rule,
/// which nobody may make.
pub fn roles(operation: &str) -> Option<&'static [Role]> {
    OPERATIONS
        .iter()
        .find(|(_, name, _)| *name == operation)
        .map(|(_, _, roles)| *roles)
}

/// The static name of `operation` when the table has it: what a [`crate::Call`] carries.
pub fn operation(name: &str) -> Option<&'static str> {
    OPERATIONS.iter().find(|(_, n, _)| *n == name).map(|(_, n, _)| *n)
}

/// Whether `role` may make `operation`.
pub fn allows(operation: &str, role: Role) -> bool {
    roles(operation).is_some_and(|roles| roles.contains(&role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_unique() {
        for (i, (_, name, _)) in OPERATIONS.iter().enumerate() {
            assert!(
                OPERATIONS[i + 1..].iter().all(|(_, other, _)| other != name),
                "{name} twice"
            );
        }
    }

    #[test]
    fn analysts_and_admins_never_reach_a_patient_level_record() {
        // GetReferenceHistory refuses patient-level kinds itself (registry::history).
        for (service, name, roles) in OPERATIONS {
            if *service == "RegistryService" && !name.contains("Cohort") {
                assert!(!roles.contains(&Analyst), "{name}");
                assert!(!roles.contains(&NationalAnalyst), "{name}");
                assert!(!roles.contains(&Admin), "{name}");
            }
        }
    }
}
