-- The filière a report run is limited to (NULL: every filière), in its own column: it says to
-- whom the run and its outputs may be shown (analysts and data managers of that filière), and
-- lists of runs filter on it. A run limited to one cohort belongs to the cohort's filière.
--
-- Runs recorded before this column get it from their parameters, once, with the append-only
-- trigger lifted for this statement only.

ALTER TABLE report_runs ADD COLUMN filiere TEXT;

DROP TRIGGER report_runs_no_update;
UPDATE report_runs SET filiere = COALESCE(
    json_extract(parameters, '$.scope.filiere'),
    (SELECT c.filiere FROM cohort_versions c
      WHERE c.id = json_extract(report_runs.parameters, '$.scope.cohort') AND c.superseded_at IS NULL));
CREATE TRIGGER report_runs_no_update BEFORE UPDATE ON report_runs
BEGIN SELECT RAISE(ABORT, 'report_runs is append-only'); END;

CREATE INDEX report_runs_filiere ON report_runs (filiere, id);
