-- What each connector's last pass and the webhook listener saw: its circuit
-- breaker, its API calls today (UTC) and its webhooks, for `tandem status`,
-- the health page and monitors in another process.
CREATE TABLE connector_health (
    connector          TEXT    PRIMARY KEY,
    -- 'closed', 'open' or 'half-open', as of updated_at.
    breaker            TEXT    NOT NULL DEFAULT 'closed',
    -- Times it opened since the engine started.
    breaker_opened     INTEGER NOT NULL DEFAULT 0,
    -- Share of failed calls among the recent ones.
    failure_ratio      REAL    NOT NULL DEFAULT 0,
    -- The UTC day (days since 1970-01-01) the counts below are of.
    day                INTEGER NOT NULL,
    requests_today     INTEGER NOT NULL DEFAULT 0,
    throttled_today    INTEGER NOT NULL DEFAULT 0,
    webhooks_today     INTEGER NOT NULL DEFAULT 0,
    -- Deliveries refused today: bad signature, stale, unreadable.
    webhooks_refused_today INTEGER NOT NULL DEFAULT 0,
    last_webhook_at    INTEGER,
    updated_at         INTEGER NOT NULL
);
