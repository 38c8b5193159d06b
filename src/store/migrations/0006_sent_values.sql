-- Values a queued write carried to a side, with the other side's value when it
-- was decided. Such a write may have reached the system before a crash even if
-- a later decision replaced it in the outbox: a side found holding one of these
-- values holds tandem's echo, not a person's edit. Cleared for a field once its
-- base moves on that side.
CREATE TABLE sent_values (
    link_id INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    side    TEXT    NOT NULL CHECK (side IN ('left', 'right')),
    field   TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    PRIMARY KEY (link_id, side, field, value)
) WITHOUT ROWID;
