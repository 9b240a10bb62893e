-- no-transaction
-- A role for national reports: the national analyst runs and reads the reports of every
-- filière, national ones included, and no patient-level record. SQLite cannot change a CHECK
-- constraint in place: the table is rebuilt with the same rows, by the procedure of the SQLite
-- documentation (ALTER TABLE, "Making Other Kinds Of Table Schema Changes"). Foreign keys are
-- off while it runs, which SQLite allows only outside a transaction, hence this migration's own
-- transaction: the revocations' foreign key names the table, which is back under its name at
-- the commit, and foreign_key_check then finds nothing to report.
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE access_tokens_new (
    id             TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL UNIQUE CHECK (length(secret_sha256) = 64),
    role           TEXT NOT NULL CHECK (role IN ('prescriber', 'data_manager', 'analyst', 'national_analyst', 'partner', 'admin')),
    -- JSON arrays of FINESS numbers and filière codes.
    centres        TEXT NOT NULL CHECK (json_valid(centres)),
    filieres       TEXT NOT NULL CHECK (json_valid(filieres)),
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    -- NULL: no expiry.
    expires_at     TEXT,
    client_subject TEXT
) STRICT;

INSERT INTO access_tokens_new (id, secret_sha256, role, centres, filieres, created_at, created_by, expires_at, client_subject)
    SELECT id, secret_sha256, role, centres, filieres, created_at, created_by, expires_at, client_subject FROM access_tokens;

DROP TRIGGER access_tokens_no_update;
DROP TRIGGER access_tokens_no_delete;
DROP INDEX access_tokens_client_subject;
DROP TABLE access_tokens;
ALTER TABLE access_tokens_new RENAME TO access_tokens;

CREATE INDEX access_tokens_client_subject ON access_tokens (client_subject) WHERE client_subject IS NOT NULL;
CREATE TRIGGER access_tokens_no_update BEFORE UPDATE ON access_tokens
BEGIN SELECT RAISE(ABORT, 'access_tokens is append-only'); END;
CREATE TRIGGER access_tokens_no_delete BEFORE DELETE ON access_tokens
BEGIN SELECT RAISE(ABORT, 'access_tokens is append-only'); END;

COMMIT;
PRAGMA foreign_keys = ON;
