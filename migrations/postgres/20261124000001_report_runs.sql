-- Report runs: every run of the analytics job (asked over gRPC, started by the schedule, or
-- from the command line), with its parameters, and its outcome once it ends. Both tables are
-- append-only (triggers below): a run is written once when accepted, its outcome once when it
-- ends; a run without an outcome is running, or was interrupted by a restart (an `interrupted`
-- outcome is then recorded at the next start).

CREATE TABLE report_runs (
    id               TEXT PRIMARY KEY,
    requested_at     TIMESTAMPTZ NOT NULL,
    requested_by     TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    trigger          TEXT NOT NULL CHECK (trigger IN ('request', 'schedule', 'command_line')),
    -- 'monthly' or 'quarterly' for scheduled runs: one succeeded run per (schedule, period).
    schedule         TEXT CHECK (schedule IN ('monthly', 'quarterly')),
    attempt          BIGINT NOT NULL CHECK (attempt >= 1),
    idempotency_key  TEXT UNIQUE,
    -- SHA-256 of the parameters, what an idempotency key is bound to.
    fingerprint      TEXT NOT NULL,
    period_label     TEXT NOT NULL,
    as_of            TIMESTAMPTZ NOT NULL,
    parameters       JSONB NOT NULL,
    out_dir          TEXT NOT NULL,
    CHECK ((trigger = 'schedule') = (schedule IS NOT NULL))
);
CREATE UNIQUE INDEX report_runs_schedule_attempt ON report_runs (schedule, period_label, attempt)
    WHERE schedule IS NOT NULL;

CREATE TABLE report_run_outcomes (
    run_id       TEXT PRIMARY KEY REFERENCES report_runs (id),
    finished_at  TIMESTAMPTZ NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'interrupted')),
    manifest     JSONB,
    error        TEXT,
    CHECK ((status = 'succeeded') = (manifest IS NOT NULL))
);

CREATE TRIGGER report_runs_append_only BEFORE UPDATE OR DELETE ON report_runs
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER report_run_outcomes_append_only BEFORE UPDATE OR DELETE ON report_run_outcomes
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
