-- Idempotency keys belong to their caller. Keys used to be unique per operation only, so a
-- caller replaying another's key and payload received the other's record, and could squat
-- keys others would use. From here on a key is looked up and stored per principal (the actor
-- of the write context: `role:token-id` for a token holder, the name of a local process
-- otherwise), so no caller can observe or block another's keys.
--
-- idempotency_keys and report_runs.idempotency_key stay as they were (append-only) and are no
-- longer written; their rows are carried over below, each under the principal that wrote the
-- versions it produced (or asked for the run), so replays from before the change still work.

CREATE TABLE principal_idempotency_keys (
    principal     TEXT NOT NULL,
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    result        JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (principal, scope, key)
);

CREATE TRIGGER principal_idempotency_append_only BEFORE UPDATE OR DELETE ON principal_idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER principal_idempotency_no_truncate BEFORE TRUNCATE ON principal_idempotency_keys
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The principal of an earlier key: who recorded the first version its call produced.
INSERT INTO principal_idempotency_keys (principal, scope, key, request_hash, result, created_at)
SELECT v.recorded_by, i.scope, i.key, i.request_hash, i.result, i.created_at
FROM idempotency_keys i
JOIN (
    SELECT 'CENTRE' AS kind, id, version, recorded_by FROM centre_versions
    UNION ALL SELECT 'PRESCRIBER', id, version, recorded_by FROM prescriber_versions
    UNION ALL SELECT 'FRAMEWORK', id, version, recorded_by FROM framework_versions
    UNION ALL SELECT 'COHORT', id, version, recorded_by FROM cohort_versions
    UNION ALL SELECT 'PATIENT', id, version, recorded_by FROM patient_versions
    UNION ALL SELECT 'EPISODE', id, version, recorded_by FROM episode_versions
    UNION ALL SELECT 'AUTHORISATION', id, version, recorded_by FROM authorisation_versions
    UNION ALL SELECT 'FOLLOW_UP', id, version, recorded_by FROM follow_up_versions
    UNION ALL SELECT 'ADVERSE_EVENT', id, version, recorded_by FROM adverse_event_versions
) AS v
  ON v.kind = i.result -> 0 ->> 0
 AND v.id = i.result -> 0 ->> 1
 AND v.version = (i.result -> 0 ->> 2)::BIGINT;

-- The idempotency key of a report run, per principal (the run's requested_by).
CREATE TABLE report_run_keys (
    principal  TEXT NOT NULL,
    key        TEXT NOT NULL,
    run_id     TEXT NOT NULL UNIQUE REFERENCES report_runs (id),
    PRIMARY KEY (principal, key)
);

CREATE TRIGGER report_run_keys_append_only BEFORE UPDATE OR DELETE ON report_run_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER report_run_keys_no_truncate BEFORE TRUNCATE ON report_run_keys
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

INSERT INTO report_run_keys (principal, key, run_id)
SELECT requested_by, idempotency_key, id FROM report_runs WHERE idempotency_key IS NOT NULL;
