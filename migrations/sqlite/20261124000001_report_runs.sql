-- Report runs: every run of the analytics job (asked over gRPC, started by the schedule, or
-- from the command line), with its parameters, and its outcome once it ends. Both tables are
-- append-only (triggers below): a run is written once when accepted, its outcome once when it
-- ends; a run without an outcome is running, or was interrupted by a restart (an `interrupted`
-- outcome is then recorded at the next start).

CREATE TABLE report_runs (
    id               TEXT PRIMARY KEY,
    requested_at     TEXT NOT NULL,
    requested_by     TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    trigger          TEXT NOT NULL CHECK (trigger IN ('request', 'schedule', 'command_line')),
    -- 'monthly' or 'quarterly' for scheduled runs: one succeeded run per (schedule, period).
    schedule         TEXT CHECK (schedule IN ('monthly', 'quarterly')),
    attempt          INTEGER NOT NULL CHECK (attempt >= 1),
    idempotency_key  TEXT UNIQUE,
    -- SHA-256 of the parameters, what an idempotency key is bound to.
    fingerprint      TEXT NOT NULL,
    period_label     TEXT NOT NULL,
    as_of            TEXT NOT NULL,
    parameters       TEXT NOT NULL CHECK (json_valid(parameters)),
    out_dir          TEXT NOT NULL,
    CHECK ((trigger = 'schedule') = (schedule IS NOT NULL))
) STRICT;
CREATE UNIQUE INDEX report_runs_schedule_attempt ON report_runs (schedule, period_label, attempt)
    WHERE schedule IS NOT NULL;

CREATE TABLE report_run_outcomes (
    run_id       TEXT PRIMARY KEY REFERENCES report_runs (id),
    finished_at  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'interrupted')),
    manifest     TEXT CHECK (manifest IS NULL OR json_valid(manifest)),
    error        TEXT,
    CHECK ((status = 'succeeded') = (manifest IS NOT NULL))
) STRICT;

CREATE TRIGGER report_runs_no_update BEFORE UPDATE ON report_runs
BEGIN SELECT RAISE(ABORT, 'report_runs is append-only'); END;
CREATE TRIGGER report_runs_no_delete BEFORE DELETE ON report_runs
BEGIN SELECT RAISE(ABORT, 'report_runs is append-only'); END;
CREATE TRIGGER report_run_outcomes_no_update BEFORE UPDATE ON report_run_outcomes
BEGIN SELECT RAISE(ABORT, 'report_run_outcomes is append-only'); END;
CREATE TRIGGER report_run_outcomes_no_delete BEFORE DELETE ON report_run_outcomes
BEGIN SELECT RAISE(ABORT, 'report_run_outcomes is append-only'); END;
