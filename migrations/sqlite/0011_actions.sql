-- Task actions: the stores' own endpoints the bot calls (order lookups and the like), and the
-- state of a task a conversation is in the middle of (slots asked for, failures so far), as JSON.
CREATE TABLE actions (
    store      TEXT NOT NULL,
    name       TEXT NOT NULL,
    url        TEXT NOT NULL,
    timeout_ms INTEGER NOT NULL,
    secret     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (store, name)
);

ALTER TABLE conversations ADD COLUMN task TEXT;
