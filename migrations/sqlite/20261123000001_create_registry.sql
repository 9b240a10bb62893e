-- Registry schema, SQLite flavour (the PostgreSQL flavour in migrations/postgres has the same
-- tables and columns with native types).
--
-- Conventions:
-- * Every mutable record lives in a <kind>_versions table that is only ever appended to: a change
--   inserts version n+1 and stamps version n with superseded_at. Nothing is updated otherwise,
--   nothing is deleted (triggers below refuse it). The current version is the one with
--   superseded_at IS NULL, kept unique per id by a partial index.
-- * `body` holds the whole record as JSON (the domain's serde form); the typed columns beside it
--   are copies of the fields the registry filters, joins and reports on, written from the same
--   value in the same statement.
-- * recorded_at/superseded_at give the recorded time of each version, so a report can read the
--   registry exactly as it was known at a cutoff.
-- * No identity field (name, birth date, NIR) exists anywhere: patients carry a pseudonym only.

-- One row per record of any kind: the target of every foreign key.
CREATE TABLE records (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('CENTRE','PRESCRIBER','FRAMEWORK','COHORT','PATIENT',
                                              'EPISODE','AUTHORISATION','FOLLOW_UP','ADVERSE_EVENT')),
    created_at  TEXT NOT NULL
) STRICT;

-- Client idempotency keys of create calls: the hash of the request they came with and the
-- record versions the call produced, returned again on replay.
CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    result        TEXT NOT NULL CHECK (json_valid(result)),
    created_at    TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;

-- Shipped reference lists (reference/*.csv), loaded by `observatory migrate`.
CREATE TABLE drugs (
    atc        TEXT PRIMARY KEY,
    inn        TEXT NOT NULL,
    brand      TEXT NOT NULL,
    cis        TEXT,
    confirmed  INTEGER NOT NULL
) STRICT;

CREATE TABLE diseases (
    orpha_code TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    icd10      TEXT NOT NULL,
    filiere    TEXT NOT NULL,
    confirmed  INTEGER NOT NULL
) STRICT;

CREATE TABLE centre_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       INTEGER NOT NULL CHECK (version >= 1),
    recorded_at   TEXT NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TEXT,
    body          TEXT NOT NULL CHECK (json_valid(body)),
    region_code   TEXT NOT NULL,
    filiere       TEXT NOT NULL,
    centre_type   TEXT NOT NULL,
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE prescriber_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       INTEGER NOT NULL CHECK (version >= 1),
    recorded_at   TEXT NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TEXT,
    body          TEXT NOT NULL CHECK (json_valid(body)),
    centre_finess TEXT NOT NULL REFERENCES records(id),
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE framework_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       INTEGER NOT NULL CHECK (version >= 1),
    recorded_at   TEXT NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TEXT,
    body          TEXT NOT NULL CHECK (json_valid(body)),
    pathway       TEXT NOT NULL,
    drug_atc      TEXT NOT NULL,
    status        TEXT NOT NULL,
    valid_from    TEXT NOT NULL,
    valid_to      TEXT,
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE cohort_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       INTEGER NOT NULL CHECK (version >= 1),
    recorded_at   TEXT NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TEXT,
    body          TEXT NOT NULL CHECK (json_valid(body)),
    pathway       TEXT NOT NULL,
    drug_atc      TEXT NOT NULL,
    filiere       TEXT NOT NULL,
    framework_id  TEXT REFERENCES records(id),
    status        TEXT NOT NULL,
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE patient_versions (
    id               TEXT NOT NULL REFERENCES records(id),
    version          INTEGER NOT NULL CHECK (version >= 1),
    recorded_at      TEXT NOT NULL,
    recorded_by      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    superseded_at    TEXT,
    body             TEXT NOT NULL CHECK (json_valid(body)),
    -- IdMR digits or hex HMAC-SHA256: never an identity.
    pseudonym        TEXT NOT NULL,
    pseudonym_kind   TEXT NOT NULL,
    sex              TEXT NOT NULL,
    birth_year_month TEXT NOT NULL,
    region_code      TEXT,
    vital_status     TEXT NOT NULL,
    objects_to_reuse INTEGER NOT NULL,
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE episode_versions (
    id                        TEXT NOT NULL REFERENCES records(id),
    version                   INTEGER NOT NULL CHECK (version >= 1),
    recorded_at               TEXT NOT NULL,
    recorded_by               TEXT NOT NULL,
    reason                    TEXT NOT NULL,
    request_id                TEXT NOT NULL,
    superseded_at             TEXT,
    body                      TEXT NOT NULL CHECK (json_valid(body)),
    patient_id                TEXT NOT NULL REFERENCES records(id),
    cohort_id                 TEXT NOT NULL REFERENCES records(id),
    pathway                   TEXT NOT NULL,
    drug_atc                  TEXT NOT NULL,
    indication_orpha_code     TEXT NOT NULL,
    prescriber_rpps           TEXT NOT NULL REFERENCES records(id),
    centre_finess             TEXT NOT NULL REFERENCES records(id),
    framework_id              TEXT REFERENCES records(id),
    authorisation_id          TEXT,
    status                    TEXT NOT NULL,
    request_date              TEXT NOT NULL,
    decision_date             TEXT,
    first_administration_date TEXT,
    end_date                  TEXT,
    stop_reason               TEXT,
    previous_episode_id       TEXT REFERENCES records(id),
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE authorisation_versions (
    id             TEXT NOT NULL REFERENCES records(id),
    version        INTEGER NOT NULL CHECK (version >= 1),
    recorded_at    TEXT NOT NULL,
    recorded_by    TEXT NOT NULL,
    reason         TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    superseded_at  TEXT,
    body           TEXT NOT NULL CHECK (json_valid(body)),
    episode_id     TEXT NOT NULL REFERENCES records(id),
    patient_id     TEXT NOT NULL REFERENCES records(id),
    status         TEXT NOT NULL,
    submitted_date TEXT NOT NULL,
    decision_date  TEXT,
    valid_from     TEXT,
    valid_to       TEXT,
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE follow_up_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       INTEGER NOT NULL CHECK (version >= 1),
    recorded_at   TEXT NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TEXT,
    body          TEXT NOT NULL CHECK (json_valid(body)),
    episode_id    TEXT NOT NULL REFERENCES records(id),
    visit_date    TEXT NOT NULL,
    PRIMARY KEY (id, version)
) STRICT;

CREATE TABLE adverse_event_versions (
    id             TEXT NOT NULL REFERENCES records(id),
    version        INTEGER NOT NULL CHECK (version >= 1),
    recorded_at    TEXT NOT NULL,
    recorded_by    TEXT NOT NULL,
    reason         TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    superseded_at  TEXT,
    body           TEXT NOT NULL CHECK (json_valid(body)),
    episode_id     TEXT NOT NULL REFERENCES records(id),
    onset_date     TEXT NOT NULL,
    meddra_pt_code TEXT NOT NULL,
    serious        INTEGER NOT NULL,
    PRIMARY KEY (id, version)
) STRICT;

-- One current version per record.
CREATE UNIQUE INDEX centre_current        ON centre_versions (id)        WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX prescriber_current    ON prescriber_versions (id)    WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX framework_current     ON framework_versions (id)     WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX cohort_current        ON cohort_versions (id)        WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX patient_current       ON patient_versions (id)       WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX episode_current       ON episode_versions (id)       WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX authorisation_current ON authorisation_versions (id) WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX follow_up_current     ON follow_up_versions (id)     WHERE superseded_at IS NULL;
CREATE UNIQUE INDEX adverse_event_current ON adverse_event_versions (id) WHERE superseded_at IS NULL;
-- One current patient per pseudonym.
CREATE UNIQUE INDEX patient_pseudonym_current ON patient_versions (pseudonym) WHERE superseded_at IS NULL;

-- Filters of the List RPCs and joins of the reports.
CREATE INDEX episode_patient  ON episode_versions (patient_id);
CREATE INDEX episode_cohort   ON episode_versions (cohort_id);
CREATE INDEX episode_centre   ON episode_versions (centre_finess);
CREATE INDEX episode_request  ON episode_versions (request_date);
CREATE INDEX authorisation_episode ON authorisation_versions (episode_id);
CREATE INDEX follow_up_episode     ON follow_up_versions (episode_id);
CREATE INDEX adverse_event_episode ON adverse_event_versions (episode_id);

-- Append-only: a version may only be stamped superseded (once); nothing is deleted.
CREATE TRIGGER records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
CREATE TRIGGER idempotency_no_update BEFORE UPDATE ON idempotency_keys
BEGIN SELECT RAISE(ABORT, 'idempotency keys are append-only'); END;
CREATE TRIGGER idempotency_no_delete BEFORE DELETE ON idempotency_keys
BEGIN SELECT RAISE(ABORT, 'idempotency keys are append-only'); END;

CREATE TRIGGER centre_versions_append_only BEFORE UPDATE ON centre_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'centre_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER centre_versions_no_delete BEFORE DELETE ON centre_versions
BEGIN SELECT RAISE(ABORT, 'centre_versions is append-only'); END;

CREATE TRIGGER prescriber_versions_append_only BEFORE UPDATE ON prescriber_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'prescriber_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER prescriber_versions_no_delete BEFORE DELETE ON prescriber_versions
BEGIN SELECT RAISE(ABORT, 'prescriber_versions is append-only'); END;

CREATE TRIGGER framework_versions_append_only BEFORE UPDATE ON framework_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'framework_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER framework_versions_no_delete BEFORE DELETE ON framework_versions
BEGIN SELECT RAISE(ABORT, 'framework_versions is append-only'); END;

CREATE TRIGGER cohort_versions_append_only BEFORE UPDATE ON cohort_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'cohort_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER cohort_versions_no_delete BEFORE DELETE ON cohort_versions
BEGIN SELECT RAISE(ABORT, 'cohort_versions is append-only'); END;

CREATE TRIGGER patient_versions_append_only BEFORE UPDATE ON patient_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'patient_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER patient_versions_no_delete BEFORE DELETE ON patient_versions
BEGIN SELECT RAISE(ABORT, 'patient_versions is append-only'); END;

CREATE TRIGGER episode_versions_append_only BEFORE UPDATE ON episode_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'episode_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER episode_versions_no_delete BEFORE DELETE ON episode_versions
BEGIN SELECT RAISE(ABORT, 'episode_versions is append-only'); END;

CREATE TRIGGER authorisation_versions_append_only BEFORE UPDATE ON authorisation_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'authorisation_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER authorisation_versions_no_delete BEFORE DELETE ON authorisation_versions
BEGIN SELECT RAISE(ABORT, 'authorisation_versions is append-only'); END;

CREATE TRIGGER follow_up_versions_append_only BEFORE UPDATE ON follow_up_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'follow_up_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER follow_up_versions_no_delete BEFORE DELETE ON follow_up_versions
BEGIN SELECT RAISE(ABORT, 'follow_up_versions is append-only'); END;

CREATE TRIGGER adverse_event_versions_append_only BEFORE UPDATE ON adverse_event_versions
WHEN OLD.superseded_at IS NOT NULL
  OR NEW.superseded_at IS NULL
  OR NEW.id IS NOT OLD.id OR NEW.version IS NOT OLD.version OR NEW.body IS NOT OLD.body
  OR NEW.recorded_at IS NOT OLD.recorded_at OR NEW.recorded_by IS NOT OLD.recorded_by
  OR NEW.reason IS NOT OLD.reason OR NEW.request_id IS NOT OLD.request_id
BEGIN SELECT RAISE(ABORT, 'adverse_event_versions is append-only: only superseded_at may be set, once'); END;
CREATE TRIGGER adverse_event_versions_no_delete BEFORE DELETE ON adverse_event_versions
BEGIN SELECT RAISE(ABORT, 'adverse_event_versions is append-only'); END;
