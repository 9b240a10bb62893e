-- Registry schema, PostgreSQL flavour (the SQLite flavour in migrations/sqlite has the same tables
-- and columns; here with native types: DATE, TIMESTAMPTZ, BOOLEAN, JSONB).
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
    created_at  TIMESTAMPTZ NOT NULL
);

-- Client idempotency keys of create calls: the hash of the request they came with and the
-- record versions the call produced, returned again on replay.
CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    result        JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Shipped reference lists (reference/*.csv), loaded by `observatory migrate`.
CREATE TABLE drugs (
    atc        TEXT PRIMARY KEY,
    inn        TEXT NOT NULL,
    brand      TEXT NOT NULL,
    cis        TEXT,
    confirmed  BOOLEAN NOT NULL
);

CREATE TABLE diseases (
    orpha_code TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    icd10      TEXT NOT NULL,
    filiere    TEXT NOT NULL,
    confirmed  BOOLEAN NOT NULL
);

CREATE TABLE centre_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       BIGINT NOT NULL CHECK (version >= 1),
    recorded_at   TIMESTAMPTZ NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TIMESTAMPTZ,
    body          JSONB NOT NULL,
    region_code   TEXT NOT NULL,
    filiere       TEXT NOT NULL,
    centre_type   TEXT NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE prescriber_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       BIGINT NOT NULL CHECK (version >= 1),
    recorded_at   TIMESTAMPTZ NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TIMESTAMPTZ,
    body          JSONB NOT NULL,
    centre_finess TEXT NOT NULL REFERENCES records(id),
    PRIMARY KEY (id, version)
);

CREATE TABLE framework_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       BIGINT NOT NULL CHECK (version >= 1),
    recorded_at   TIMESTAMPTZ NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TIMESTAMPTZ,
    body          JSONB NOT NULL,
    pathway       TEXT NOT NULL,
    drug_atc      TEXT NOT NULL,
    status        TEXT NOT NULL,
    valid_from    DATE NOT NULL,
    valid_to      DATE,
    PRIMARY KEY (id, version)
);

CREATE TABLE cohort_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       BIGINT NOT NULL CHECK (version >= 1),
    recorded_at   TIMESTAMPTZ NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TIMESTAMPTZ,
    body          JSONB NOT NULL,
    pathway       TEXT NOT NULL,
    drug_atc      TEXT NOT NULL,
    filiere       TEXT NOT NULL,
    framework_id  TEXT REFERENCES records(id),
    status        TEXT NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE patient_versions (
    id               TEXT NOT NULL REFERENCES records(id),
    version          BIGINT NOT NULL CHECK (version >= 1),
    recorded_at      TIMESTAMPTZ NOT NULL,
    recorded_by      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    superseded_at    TIMESTAMPTZ,
    body             JSONB NOT NULL,
    -- IdMR digits or hex HMAC-SHA256: never an identity.
    pseudonym        TEXT NOT NULL,
    pseudonym_kind   TEXT NOT NULL,
    sex              TEXT NOT NULL,
    birth_year_month TEXT NOT NULL,
    region_code      TEXT,
    vital_status     TEXT NOT NULL,
    objects_to_reuse BOOLEAN NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE episode_versions (
    id                        TEXT NOT NULL REFERENCES records(id),
    version                   BIGINT NOT NULL CHECK (version >= 1),
    recorded_at               TIMESTAMPTZ NOT NULL,
    recorded_by               TEXT NOT NULL,
    reason                    TEXT NOT NULL,
    request_id                TEXT NOT NULL,
    superseded_at             TIMESTAMPTZ,
    body                      JSONB NOT NULL,
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
    request_date              DATE NOT NULL,
    decision_date             DATE,
    first_administration_date DATE,
    end_date                  DATE,
    stop_reason               TEXT,
    previous_episode_id       TEXT REFERENCES records(id),
    PRIMARY KEY (id, version)
);

CREATE TABLE authorisation_versions (
    id             TEXT NOT NULL REFERENCES records(id),
    version        BIGINT NOT NULL CHECK (version >= 1),
    recorded_at    TIMESTAMPTZ NOT NULL,
    recorded_by    TEXT NOT NULL,
    reason         TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    superseded_at  TIMESTAMPTZ,
    body           JSONB NOT NULL,
    episode_id     TEXT NOT NULL REFERENCES records(id),
    patient_id     TEXT NOT NULL REFERENCES records(id),
    status         TEXT NOT NULL,
    submitted_date DATE NOT NULL,
    decision_date  DATE,
    valid_from     DATE,
    valid_to       DATE,
    PRIMARY KEY (id, version)
);

CREATE TABLE follow_up_versions (
    id            TEXT NOT NULL REFERENCES records(id),
    version       BIGINT NOT NULL CHECK (version >= 1),
    recorded_at   TIMESTAMPTZ NOT NULL,
    recorded_by   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    superseded_at TIMESTAMPTZ,
    body          JSONB NOT NULL,
    episode_id    TEXT NOT NULL REFERENCES records(id),
    visit_date    DATE NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE adverse_event_versions (
    id             TEXT NOT NULL REFERENCES records(id),
    version        BIGINT NOT NULL CHECK (version >= 1),
    recorded_at    TIMESTAMPTZ NOT NULL,
    recorded_by    TEXT NOT NULL,
    reason         TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    superseded_at  TIMESTAMPTZ,
    body           JSONB NOT NULL,
    episode_id     TEXT NOT NULL REFERENCES records(id),
    onset_date     DATE NOT NULL,
    meddra_pt_code TEXT NOT NULL,
    serious        BOOLEAN NOT NULL,
    PRIMARY KEY (id, version)
);

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
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;

-- Allows exactly one change to a version row: setting superseded_at where it was NULL.
CREATE FUNCTION allow_supersede_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.superseded_at IS NOT NULL OR NEW.superseded_at IS NULL
       OR (to_jsonb(NEW) - 'superseded_at') IS DISTINCT FROM (to_jsonb(OLD) - 'superseded_at') THEN
        RAISE EXCEPTION '% is append-only: only superseded_at may be set, once', TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER idempotency_append_only BEFORE UPDATE OR DELETE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER centre_versions_supersede_only BEFORE UPDATE ON centre_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER centre_versions_no_delete BEFORE DELETE ON centre_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER prescriber_versions_supersede_only BEFORE UPDATE ON prescriber_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER prescriber_versions_no_delete BEFORE DELETE ON prescriber_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER framework_versions_supersede_only BEFORE UPDATE ON framework_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER framework_versions_no_delete BEFORE DELETE ON framework_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER cohort_versions_supersede_only BEFORE UPDATE ON cohort_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER cohort_versions_no_delete BEFORE DELETE ON cohort_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER patient_versions_supersede_only BEFORE UPDATE ON patient_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER patient_versions_no_delete BEFORE DELETE ON patient_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER episode_versions_supersede_only BEFORE UPDATE ON episode_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER episode_versions_no_delete BEFORE DELETE ON episode_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER authorisation_versions_supersede_only BEFORE UPDATE ON authorisation_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER authorisation_versions_no_delete BEFORE DELETE ON authorisation_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER follow_up_versions_supersede_only BEFORE UPDATE ON follow_up_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER follow_up_versions_no_delete BEFORE DELETE ON follow_up_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER adverse_event_versions_supersede_only BEFORE UPDATE ON adverse_event_versions
    FOR EACH ROW EXECUTE FUNCTION allow_supersede_only();
CREATE TRIGGER adverse_event_versions_no_delete BEFORE DELETE ON adverse_event_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
