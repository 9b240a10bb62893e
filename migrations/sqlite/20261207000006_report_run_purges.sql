-- Retention of report outputs: a run's files (its snapshot of pseudonymised records, its
-- tables and documents) are deleted once it ended more than `report_retention_days` ago. The
-- run and its manifest stay; this row says when its files went and how much was deleted.
-- Append-only like the runs.
CREATE TABLE report_run_purges (
    run_id     TEXT PRIMARY KEY REFERENCES report_runs (id),
    purged_at  TEXT NOT NULL,
    files      INTEGER NOT NULL CHECK (files >= 0),
    bytes      INTEGER NOT NULL CHECK (bytes >= 0)
) STRICT;

CREATE TRIGGER report_run_purges_no_update BEFORE UPDATE ON report_run_purges
BEGIN SELECT RAISE(ABORT, 'report_run_purges is append-only'); END;
CREATE TRIGGER report_run_purges_no_delete BEFORE DELETE ON report_run_purges
BEGIN SELECT RAISE(ABORT, 'report_run_purges is append-only'); END;
