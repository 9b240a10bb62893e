-- Retention of the audit trail: events older than the retention period (six rolling months by
-- default, as health establishments keep access traces) are archived to a file kept outside
-- the database, then removed. An archive covers a prefix of the chain, events up to last_seq:
-- the events left start at last_seq + 1, whose prev_hash is last_hash, so verification goes on
-- from this row as from a genesis. mac is HMAC-SHA256(audit key, "archive:SEQ:HASH"): without
-- the key, nobody can forge a row that would excuse removed events. The file's SHA-256 ties the
-- row to the archive file; `observatory audit verify-archive` checks a file on its own.
--
-- Events may only be deleted when an archive row covers them (trigger below); archive rows are
-- append-only.

CREATE TABLE audit_archives (
    last_seq          INTEGER PRIMARY KEY CHECK (last_seq >= 1),
    last_hash         TEXT NOT NULL CHECK (length(last_hash) = 64),
    last_recorded_at  TEXT NOT NULL,
    first_seq         INTEGER NOT NULL CHECK (first_seq >= 1 AND first_seq <= last_seq),
    file_sha256       TEXT NOT NULL CHECK (length(file_sha256) = 64),
    archived_at       TEXT NOT NULL,
    archived_by       TEXT NOT NULL,
    mac               TEXT
) STRICT;

CREATE TRIGGER audit_archives_no_update BEFORE UPDATE ON audit_archives
BEGIN SELECT RAISE(ABORT, 'audit_archives is append-only'); END;
CREATE TRIGGER audit_archives_no_delete BEFORE DELETE ON audit_archives
BEGIN SELECT RAISE(ABORT, 'audit_archives is append-only'); END;

DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq > (SELECT COALESCE(MAX(last_seq), 0) FROM audit_archives)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: only archived events may be removed'); END;
