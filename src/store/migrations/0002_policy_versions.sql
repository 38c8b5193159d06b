-- Every version of a pair's policy file the engine met: activated, or refused
-- with its problems. A pair's newest activated row is its active policy.
CREATE TABLE policy_versions (
    id          INTEGER PRIMARY KEY,
    pair        TEXT    NOT NULL,
    file        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('activated', 'refused')),
    problems    TEXT,
    -- The file's owner: who put this version there.
    by_whom     TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    -- Paths the version reads on each side (JSON arrays), to tell what a next one adds.
    left_paths  TEXT    NOT NULL DEFAULT '[]',
    right_paths TEXT    NOT NULL DEFAULT '[]',
    -- When every link was decided again under this version; NULL until then.
    applied_at  INTEGER
);
CREATE INDEX policy_versions_pair ON policy_versions (pair, outcome, id);
