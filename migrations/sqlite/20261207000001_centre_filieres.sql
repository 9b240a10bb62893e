-- A centre may belong to several filières (a university hospital site is often a reference or
-- competence centre of more than one network).
--
-- `filieres` holds every filière of a centre version, each code between bars
-- (`|FILNEMUS|MHEMO|`), so that a list by filière is one `LIKE '%|CODE|%'` on both databases;
-- `filiere` keeps the first of them. Versions written before this column have it NULL and belong
-- to their `filiere` alone: their rows are not touched (versions are append-only), the list
-- query reads either column.
ALTER TABLE centre_versions ADD COLUMN filieres TEXT;
