-- The last full comparison of both systems against the state (`tandem
-- reconcile`, or the engine on its schedule), per pair.
CREATE TABLE drift (
    pair        TEXT    PRIMARY KEY,
    at          INTEGER NOT NULL,
    -- Records listed on each side.
    listed_left  INTEGER NOT NULL,
    listed_right INTEGER NOT NULL,
    -- Links whose records agree on every field.
    matched     INTEGER NOT NULL,
    -- Links whose records disagree with no conflict or write waiting to settle it.
    different   INTEGER NOT NULL,
    -- Links whose record was not listed on a side (and is not known archived).
    missing     INTEGER NOT NULL,
    -- Records listed, in scope, with no link.
    extra       INTEGER NOT NULL,
    -- Links that disagree while a conflict or a queued write settles them.
    settling    INTEGER NOT NULL
);
