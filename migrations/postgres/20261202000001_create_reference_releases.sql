-- Reference data loaded at run time, versioned. Each import of an official file (the Orphanet
-- nomenclature, the BDPM, an ATC list, MedDRA) is a release: its source, version, date, the
-- SHA-256 of each file and of the whole, and what it holds; the shipped lists are recorded as the
-- first release (source SHIPPED) when the registry is created. A release holds every entry of
-- the kinds its source supplies, the codes its predecessor had and it dropped marked retired in
-- their body, so the release in force is enough to read any stored code.
--
-- Both tables are append-only: a release is never edited, only followed by another. Re-importing
-- the same files finds the release already recorded (UNIQUE (source, sha256)).
--
-- The drugs and diseases tables of the first migration, which nothing read, are replaced.

CREATE TABLE reference_releases (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        TEXT NOT NULL CHECK (source IN ('SHIPPED', 'ORPHADATA', 'BDPM', 'ATC', 'MEDDRA')),
    version       TEXT NOT NULL,
    release_date  DATE,
    sha256        TEXT NOT NULL CHECK (length(sha256) = 64),
    files         JSONB NOT NULL,
    counts        JSONB NOT NULL,
    imported_at   TIMESTAMPTZ NOT NULL,
    imported_by   TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    UNIQUE (source, sha256)
);

CREATE TABLE reference_entries (
    release_seq  BIGINT NOT NULL REFERENCES reference_releases (seq),
    kind         TEXT NOT NULL,
    code         TEXT NOT NULL,
    body         JSONB NOT NULL,
    PRIMARY KEY (release_seq, kind, code)
);

CREATE TRIGGER reference_releases_append_only BEFORE UPDATE OR DELETE ON reference_releases
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER reference_releases_no_truncate BEFORE TRUNCATE ON reference_releases
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER reference_entries_append_only BEFORE UPDATE OR DELETE ON reference_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER reference_entries_no_truncate BEFORE TRUNCATE ON reference_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

DROP TABLE drugs;
DROP TABLE diseases;
