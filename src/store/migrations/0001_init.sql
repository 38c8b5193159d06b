-- The engine's memory of each synced pair. Values are JSON text.

-- A linked pair of records. An id is NULL while the record is being created on that
-- side. A record archived or deleted on a side sets that side's gone_at: the link
-- stops syncing until the record is restored.
CREATE TABLE links (
    id            INTEGER PRIMARY KEY,
    pair          TEXT    NOT NULL,
    match_key     TEXT    NOT NULL,
    left_id       TEXT,
    right_id      TEXT,
    left_gone_at  INTEGER,
    right_gone_at INTEGER,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX links_left  ON links (pair, left_id)  WHERE left_id IS NOT NULL;
CREATE UNIQUE INDEX links_right ON links (pair, right_id) WHERE right_id IS NOT NULL;
CREATE UNIQUE INDEX links_key   ON links (pair, match_key);

-- The last version of each side's record that the engine saw (or wrote), raw fields by vendor path.
CREATE TABLE versions (
    link_id     INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    side        TEXT    NOT NULL CHECK (side IN ('left', 'right')),
    updated_at  INTEGER NOT NULL,
    standing    TEXT    NOT NULL DEFAULT 'active',
    fields      TEXT    NOT NULL,
    PRIMARY KEY (link_id, side)
);

-- The base of the three-way merge: per link and field, the last agreed value as each side holds it.
CREATE TABLE base (
    link_id     INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    field       TEXT    NOT NULL,
    left_value  TEXT    NOT NULL,
    right_value TEXT    NOT NULL,
    agreed_at   INTEGER NOT NULL,
    PRIMARY KEY (link_id, field)
);

-- Where polling of each side of each pair stands (opaque to the engine).
CREATE TABLE cursors (
    pair        TEXT    NOT NULL,
    side        TEXT    NOT NULL CHECK (side IN ('left', 'right')),
    value       TEXT    NOT NULL,
    full_listing INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (pair, side)
);

-- Records pulled but not yet reconciled. A cursor moves in the same transaction that fills this.
CREATE TABLE inbox (
    pair        TEXT    NOT NULL,
    side        TEXT    NOT NULL CHECK (side IN ('left', 'right')),
    record_id   TEXT    NOT NULL,
    match_key   TEXT,
    updated_at  INTEGER NOT NULL,
    record      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (pair, side, record_id)
);
CREATE INDEX inbox_key ON inbox (pair, side, match_key);
CREATE INDEX inbox_order ON inbox (pair, received_at, side, record_id);

-- Webhook hints, deduplicated by the vendor's event id. A processed hint is kept
-- (done = 1) for a while, so that a late redelivery is still recognised.
CREATE TABLE hints (
    id          INTEGER PRIMARY KEY,
    pair        TEXT    NOT NULL,
    side        TEXT    NOT NULL CHECK (side IN ('left', 'right')),
    event_id    TEXT    NOT NULL,
    hint        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (pair, side, event_id)
);
CREATE INDEX hints_pending ON hints (pair, done, id);

-- Writes to make, at most one per link and side; a newer decision replaces a pending one.
-- A row that failed too often is kept with status 'dead' (a dead letter).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    pair            TEXT    NOT NULL,
    link_id         INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    side            TEXT    NOT NULL CHECK (side IN ('left', 'right')),
    op              TEXT    NOT NULL CHECK (op IN ('create', 'update', 'archive', 'delete')),
    target_id       TEXT,
    match_key       TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    fields          TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX outbox_link_side ON outbox (link_id, side);
CREATE INDEX outbox_due ON outbox (pair, side, status, next_attempt_at);

-- What no rule could settle: a field changed on both sides ('field'), or a record
-- whose key another record's link holds ('ambiguous_match', with the record in
-- detail). At most one open conflict per link, field and kind.
CREATE TABLE conflicts (
    id               INTEGER PRIMARY KEY,
    pair             TEXT    NOT NULL,
    link_id          INTEGER NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    field            TEXT    NOT NULL,
    kind             TEXT    NOT NULL DEFAULT 'field' CHECK (kind IN ('field', 'ambiguous_match')),
    detail           TEXT,
    base_left        TEXT,
    base_right       TEXT,
    left_value       TEXT    NOT NULL,
    right_value      TEXT    NOT NULL,
    left_changed_at  INTEGER,
    right_changed_at INTEGER,
    rule             TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolution       TEXT,
    resolved_by      TEXT,
    opened_at        INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    resolved_at      INTEGER
);
CREATE UNIQUE INDEX conflicts_open ON conflicts (link_id, field, kind) WHERE status = 'open';
CREATE INDEX conflicts_status ON conflicts (pair, status);

-- Everything the engine did to data, and why.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    pair     TEXT,
    link_id  INTEGER,
    side     TEXT,
    detail   TEXT    NOT NULL
);
CREATE INDEX audit_link ON audit (link_id);
