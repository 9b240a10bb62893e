-- The change feed: one row per record version written, numbered in commit order.
--
-- seq numbers the versions 1, 2, 3... with no gap, in the order their transactions committed:
-- it is assigned inside the writing transaction, after the audit trail's head, by the single
-- writer (PostgreSQL: under the audit chain's advisory lock). A partner system that has read up
-- to seq n resumes after n and misses nothing. kind, id and version point at the version row;
-- recorded_at is that row's. The table is append-only (triggers below).

CREATE TABLE changes (
    seq          INTEGER PRIMARY KEY CHECK (seq >= 1),
    kind         TEXT NOT NULL CHECK (kind IN ('CENTRE','PRESCRIBER','FRAMEWORK','COHORT','PATIENT',
                                               'EPISODE','AUTHORISATION','FOLLOW_UP','ADVERSE_EVENT')),
    id           TEXT NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    recorded_at  TEXT NOT NULL,
    UNIQUE (kind, id, version)
) STRICT;

-- A feed narrowed to some kinds reads them in order of position.
CREATE INDEX changes_kind ON changes (kind, seq);

CREATE TRIGGER changes_no_update BEFORE UPDATE ON changes
BEGIN SELECT RAISE(ABORT, 'changes is append-only'); END;
CREATE TRIGGER changes_no_delete BEFORE DELETE ON changes
BEGIN SELECT RAISE(ABORT, 'changes is append-only'); END;

-- Versions written before the feed existed, in the order they were recorded.
INSERT INTO changes (seq, kind, id, version, recorded_at)
SELECT ROW_NUMBER() OVER (ORDER BY recorded_at, kind, id, version), kind, id, version, recorded_at
FROM (
    SELECT 'CENTRE' AS kind, id, version, recorded_at FROM centre_versions
    UNION ALL SELECT 'PRESCRIBER', id, version, recorded_at FROM prescriber_versions
    UNION ALL SELECT 'FRAMEWORK', id, version, recorded_at FROM framework_versions
    UNION ALL SELECT 'COHORT', id, version, recorded_at FROM cohort_versions
    UNION ALL SELECT 'PATIENT', id, version, recorded_at FROM patient_versions
    UNION ALL SELECT 'EPISODE', id, version, recorded_at FROM episode_versions
    UNION ALL SELECT 'AUTHORISATION', id, version, recorded_at FROM authorisation_versions
    UNION ALL SELECT 'FOLLOW_UP', id, version, recorded_at FROM follow_up_versions
    UNION ALL SELECT 'ADVERSE_EVENT', id, version, recorded_at FROM adverse_event_versions
) AS versions;
