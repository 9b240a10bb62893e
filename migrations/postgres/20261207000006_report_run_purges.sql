-- Retention of report outputs: a run's files (its snapshot of pseudonymised records, its
-- tables and documents) are deleted once it ended more than `report_retention_days` ago. The
-- run and its manifest stay; this row says when its files went and how much was deleted.
-- Append-only like the runs.
CREATE TABLE report_run_purges (
    run_id     TEXT PRIMARY KEY REFERENCES report_runs (id),
    purged_at  TIMESTAMPTZ NOT NULL,
    files      BIGINT NOT NULL CHECK (files >= 0),
    bytes      BIGINT NOT NULL CHECK (bytes >= 0)
);

CREATE TRIGGER report_run_purges_append_only BEFORE UPDATE OR DELETE ON report_run_purges
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER report_run_purges_no_truncate BEFORE TRUNCATE ON report_run_purges
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
