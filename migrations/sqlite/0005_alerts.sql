-- Spike alerts, one row per episode, and each store's webhook.
CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    store            TEXT NOT NULL,
    topic            TEXT NOT NULL,   -- 'entry:<id>' (questions that entry answered) or 'questions' (a cluster of unanswered ones)
    label            TEXT NOT NULL,   -- what it is about, for people
    samples          TEXT NOT NULL,   -- JSON array: up to five of the questions
    messages         TEXT NOT NULL,   -- JSON array: the shopper messages seen in the episode (newest 1,000)
    count            INTEGER NOT NULL, -- the highest count in one window
    expected         REAL NOT NULL,   -- the usual count for a window, when it was raised
    started_at       INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    ended_at         INTEGER,
    webhook          TEXT,            -- 'delivered', 'failed', or NULL (none set, or not yet)
    webhook_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alerts_by_store ON alerts (store, started_at);

CREATE TABLE webhooks (
    store      TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
