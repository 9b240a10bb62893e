-- Access tokens: opaque bearer secrets given to callers, of which only the SHA-256 is kept
-- (the secret itself is shown once, when created). A token stands for one role bound to
-- centres and/or filières; its public id is what lists, revocations and the author of every
-- write and read name. Both tables are append-only (triggers below): revoking a token adds a
-- row to access_token_revocations, it never edits or removes the token.

CREATE TABLE access_tokens (
    id             TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL UNIQUE CHECK (length(secret_sha256) = 64),
    role           TEXT NOT NULL CHECK (role IN ('prescriber', 'data_manager', 'analyst', 'partner', 'admin')),
    -- JSON arrays of FINESS numbers and filière codes.
    centres        TEXT NOT NULL CHECK (json_valid(centres)),
    filieres       TEXT NOT NULL CHECK (json_valid(filieres)),
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    -- NULL: no expiry.
    expires_at     TEXT
) STRICT;

CREATE TABLE access_token_revocations (
    token_id    TEXT PRIMARY KEY REFERENCES access_tokens (id),
    revoked_at  TEXT NOT NULL,
    revoked_by  TEXT NOT NULL
) STRICT;

CREATE TRIGGER access_tokens_no_update BEFORE UPDATE ON access_tokens
BEGIN SELECT RAISE(ABORT, 'access_tokens is append-only'); END;
CREATE TRIGGER access_tokens_no_delete BEFORE DELETE ON access_tokens
BEGIN SELECT RAISE(ABORT, 'access_tokens is append-only'); END;
CREATE TRIGGER access_token_revocations_no_update BEFORE UPDATE ON access_token_revocations
BEGIN SELECT RAISE(ABORT, 'access_token_revocations is append-only'); END;
CREATE TRIGGER access_token_revocations_no_delete BEFORE DELETE ON access_token_revocations
BEGIN SELECT RAISE(ABORT, 'access_token_revocations is append-only'); END;
