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
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    source        TEXT NOT NULL CHECK (source IN ('SHIPPED', 'ORPHADATA', 'BDPM', 'ATC', 'MEDDRA')),
    version       TEXT NOT NULL,
    release_date  TEXT,
    sha256        TEXT NOT NULL CHECK (length(sha256) = 64),
    files         TEXT NOT NULL,
    counts        TEXT NOT NULL,
    imported_at   TEXT NOT NULL,
    imported_by   TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    UNIQUE (source, sha256)
) STRICT;

CREATE TABLE reference_entries (
    release_seq  INTEGER NOT NULL REFERENCES reference_releases (seq),
    kind         TEXT NOT NULL,
    code         TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (release_seq, kind, code)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER reference_releases_no_update BEFORE UPDATE ON reference_releases
BEGIN SELECT RAISE(ABORT, 'reference_releases is append-only'); END;
CREATE TRIGGER reference_releases_no_delete BEFORE DELETE ON reference_releases
BEGIN SELECT RAISE(ABORT, 'reference_releases is append-only'); END;
CREATE TRIGGER reference_entries_no_update BEFORE UPDATE ON reference_entries
BEGIN SELECT RAISE(ABORT, 'reference_entries is append-only'); END;
CREATE TRIGGER reference_entries_no_delete BEFORE DELETE ON reference_entries
BEGIN SELECT RAISE(ABORT, 'reference_entries is append-only'); END;

DROP TABLE drugs;
DROP TABLE diseases;
