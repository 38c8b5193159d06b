-- A person's decision on a field conflict: the canonical value chosen, and what
-- each side held when it was made. The engine writes the value through the
-- outbox like any decision; `applied_at` is set once both sides hold it, with
-- `outcome` 'applied', or 'superseded' when a side was edited again first (its
-- newer edit is then decided by the policy, and a new conflict may open).
ALTER TABLE conflicts ADD COLUMN chosen TEXT;
ALTER TABLE conflicts ADD COLUMN seen_left TEXT;
ALTER TABLE conflicts ADD COLUMN seen_right TEXT;
ALTER TABLE conflicts ADD COLUMN applied_at INTEGER;
ALTER TABLE conflicts ADD COLUMN outcome TEXT;
CREATE INDEX conflicts_pending ON conflicts (link_id)
    WHERE chosen IS NOT NULL AND applied_at IS NULL;

-- People signed in to the web page. The cookie holds a random token; only its
-- SHA-256 is stored.
CREATE TABLE sessions (
    token_sha256 TEXT    PRIMARY KEY,
    user         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    csrf         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX audit_action ON audit (action, id);
