-- The audit trail: one event per write and per patient-level read or export, hash-chained.
--
-- seq numbers the events 1, 2, 3... with no gap; hash is the SHA-256 of the event's fields and
-- of prev_hash, the hash of the event before it (64 zeros for the first). Changing or removing
-- an event breaks the chain at that point, which `observatory audit verify` reports. The table
-- is append-only (triggers below, TRUNCATE included); the chain catches what the triggers
-- cannot stop (a superuser disabling them first).
--
-- targets is the JSON array of the records the action touched, kept as text exactly as hashed:
-- kind, id, version, and the SHA-256 of the record before and after the action.
-- No identity field is ever stored here: actors are role:token-id, targets are record ids.

CREATE TABLE audit_events (
    seq          BIGINT PRIMARY KEY CHECK (seq >= 1),
    recorded_at  TIMESTAMPTZ NOT NULL,
    actor        TEXT NOT NULL,
    role         TEXT NOT NULL,
    action       TEXT NOT NULL,
    targets      TEXT NOT NULL CHECK (targets::jsonb IS NOT NULL),
    request_id   TEXT NOT NULL,
    trace_id     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash         TEXT NOT NULL UNIQUE CHECK (length(hash) = 64)
);

CREATE INDEX audit_events_recorded_at ON audit_events (recorded_at);

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
