-- The keyed audit chain: each event may carry mac = HMAC-SHA256(audit key, hash), the key kept
-- outside the database (a file or the environment, like the pseudonymisation key). Whoever can
-- write the database without the key can recompute hashes, not MACs. Events written before a
-- key was configured carry none; once one event carries a MAC, every later one must
-- (`observatory audit verify`).
ALTER TABLE audit_events ADD COLUMN mac TEXT;
