-- The filière a report run is limited to (NULL: every filière), in its own column: it says to
-- whom the run and its outputs may be shown (analysts and data managers of that filière), and
-- lists of runs filter on it. A run limited to one cohort belongs to the cohort's filière.
--
-- Runs recorded before this column get it from their parameters, once, with the append-only
-- trigger lifted inside this migration's transaction only.

ALTER TABLE report_runs ADD COLUMN filiere TEXT;

ALTER TABLE report_runs DISABLE TRIGGER report_runs_append_only;
UPDATE report_runs SET filiere = COALESCE(
    parameters #>> '{scope,filiere}',
    (SELECT c.filiere FROM cohort_versions c
      WHERE c.id = report_runs.parameters #>> '{scope,cohort}' AND c.superseded_at IS NULL));
ALTER TABLE report_runs ENABLE TRIGGER report_runs_append_only;

CREATE INDEX report_runs_filiere ON report_runs (filiere, id);
