-- Tokens held as client certificates: under mutual TLS, a caller presenting a certificate
-- signed by the configured client CA, whose subject is bound to a token here, acts as that
-- token's principal. The subject is public (it is in the certificate); the token's secret hash
-- is then that of a random secret nobody is given.

ALTER TABLE access_tokens ADD COLUMN client_subject TEXT;

CREATE INDEX access_tokens_client_subject ON access_tokens (client_subject) WHERE client_subject IS NOT NULL;
