-- Access tokens: opaque bearer secrets given to callers, of which only the SHA-256 is kept
-- (the secret itself is shown once, when created). A token stands for one role bound to
-- centres and/or filières; its public id is what lists, revocations and the author of every
-- write and read name. Both tables are append-only (triggers below): revoking a token adds a
-- row to access_token_revocations, it never edits or removes the token.

CREATE TABLE access_tokens (
    id             TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL UNIQUE CHECK (length(secret_sha256) = 64),
    role           TEXT NOT NULL CHECK (role IN ('prescriber', 'data_manager', 'analyst', 'partner', 'admin')),
    -- FINESS numbers and filière codes.
    centres        JSONB NOT NULL,
    filieres       JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    created_by     TEXT NOT NULL,
    -- NULL: no expiry.
    expires_at     TIMESTAMPTZ
);

CREATE TABLE access_token_revocations (
    token_id    TEXT PRIMARY KEY REFERENCES access_tokens (id),
    revoked_at  TIMESTAMPTZ NOT NULL,
    revoked_by  TEXT NOT NULL
);

CREATE TRIGGER access_tokens_append_only BEFORE UPDATE OR DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER access_token_revocations_append_only BEFORE UPDATE OR DELETE ON access_token_revocations
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
