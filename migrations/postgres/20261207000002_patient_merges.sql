-- Two patient records of one person are merged: the one merged points at the one kept.
--
-- `merged_into` copies the body's field of the same name, so that lists of patients leave
-- merged records out with an index rather than by reading bodies. Versions written before the
-- column have it NULL, as they should: no record was merged then (versions are append-only,
-- nothing is rewritten).
ALTER TABLE patient_versions ADD COLUMN merged_into TEXT;
