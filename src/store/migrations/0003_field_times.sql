-- When each field of the last version seen was set, by vendor path, where the
-- API says (JSON object); a field absent here changed at `updated_at` at the latest.
ALTER TABLE versions ADD COLUMN changed_at TEXT NOT NULL DEFAULT '{}';
