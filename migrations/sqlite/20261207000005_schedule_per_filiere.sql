-- Scheduled reports per filière: besides the national one, the schedule reports each filière
-- on its own, so one attempt of a period is unique per filière (NULL: national).
DROP INDEX report_runs_schedule_attempt;
CREATE UNIQUE INDEX report_runs_schedule_attempt ON report_runs (schedule, period_label, COALESCE(filiere, ''), attempt)
    WHERE schedule IS NOT NULL;
