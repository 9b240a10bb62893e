-- A role for national reports: the national analyst runs and reads the reports of every
-- filière, national ones included, and no patient-level record.
ALTER TABLE access_tokens DROP CONSTRAINT access_tokens_role_check;
ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_role_check
    CHECK (role IN ('prescriber', 'data_manager', 'analyst', 'national_analyst', 'partner', 'admin'));
