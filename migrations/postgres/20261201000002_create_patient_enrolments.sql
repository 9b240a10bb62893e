-- Enrolments: where a registered patient belongs before (and beside) its episodes.
--
-- A registration used to be unique per pseudonym across the whole registry, so registering an
-- IdMR or an identity already known elsewhere answered ALREADY_EXISTS with the other record's
-- id: anyone who could register learnt who was in the registry. Now each registration belongs
-- to the scope of the caller who made it (its centres, or its filières): a patient already
-- registered within that scope is ALREADY_EXISTS (nothing is disclosed: the caller reaches that
-- record anyway); one registered only elsewhere gets a new record, an enrolment of this scope,
-- exactly as a fresh registration would. Several records may therefore share a pseudonym: the
-- same person enrolled by different scopes (reports key patients by pseudonym, so the person is
-- counted once). A patient's reach is its enrolments and its episodes.
--
-- One row per (patient, centre) or (patient, filière), written with the registration; the
-- pseudonym is repeated so that one scope can hold one current record per person (unique index).

CREATE TABLE patient_enrolments (
    patient_id     TEXT NOT NULL,
    pseudonym      TEXT NOT NULL,
    centre_finess  TEXT,
    filiere        TEXT,
    recorded_at    TIMESTAMPTZ NOT NULL,
    CHECK ((centre_finess IS NULL) <> (filiere IS NULL))
);
CREATE INDEX patient_enrolments_patient ON patient_enrolments (patient_id);
CREATE UNIQUE INDEX patient_enrolments_centre ON patient_enrolments (pseudonym, centre_finess)
    WHERE centre_finess IS NOT NULL;
CREATE UNIQUE INDEX patient_enrolments_filiere ON patient_enrolments (pseudonym, filiere)
    WHERE filiere IS NOT NULL;

CREATE TRIGGER patient_enrolments_append_only BEFORE UPDATE OR DELETE ON patient_enrolments
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER patient_enrolments_no_truncate BEFORE TRUNCATE ON patient_enrolments
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- A pseudonym may now have several current records (one per enrolling scope).
DROP INDEX patient_pseudonym_current;
CREATE INDEX patient_pseudonym_current ON patient_versions (pseudonym) WHERE superseded_at IS NULL;
