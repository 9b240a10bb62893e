-- What a synthesis run covers ("framework:<id>" or "cohort:<id>"), read off its parameters, so
-- that the next synthesis due under a framework's periodicity is found with an index rather than
-- by reading every run. A generated column: runs stay append-only, and runs recorded before it
-- have it too. NULL for periodic reports.
ALTER TABLE report_runs ADD COLUMN synthesis_subject TEXT GENERATED ALWAYS AS (
    json_extract(parameters, '$.synthesis.target.kind') || ':' || json_extract(parameters, '$.synthesis.target.id')
) VIRTUAL;
CREATE INDEX report_runs_synthesis_subject ON report_runs (synthesis_subject)
    WHERE synthesis_subject IS NOT NULL;
