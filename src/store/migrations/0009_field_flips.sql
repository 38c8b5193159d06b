-- Values confirmed written to a field of a link, as the left side holds them,
-- for the loop detector: a field that keeps coming back to a value it held a
-- moment ago is being fought over (an automation on one side undoing the
-- other's edits), and a person decides instead. Rows older than a day are
-- dropped as new ones come; a person's decision on the field clears them.
CREATE TABLE field_flips (
    link_id INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    field   TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX field_flips_link ON field_flips (link_id, field, at);
