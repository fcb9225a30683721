-- What merchants measure: how each bot reply went, shoppers' and agents' feedback on answers,
-- and who the shopper is (the storefront's own id, when it gives one).
ALTER TABLE messages ADD COLUMN kind TEXT;
ALTER TABLE messages ADD COLUMN entry TEXT;
ALTER TABLE conversations ADD COLUMN shopper TEXT;
ALTER TABLE conversations ADD COLUMN closed_at INTEGER;
CREATE INDEX conversations_by_store_created ON conversations (store, created_at);
CREATE INDEX conversations_by_shopper ON conversations (store, shopper, created_at);

CREATE TABLE feedback (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    store           TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    message_id      INTEGER NOT NULL REFERENCES messages (id),
    source          TEXT NOT NULL,   -- 'shopper' (a vote) or 'agent' (a flag, 拉铃)
    helpful         INTEGER,         -- shopper votes: 1 up, 0 down; agent flags: 0
    note            TEXT,
    author          TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (message_id, source)
);
CREATE INDEX feedback_by_store ON feedback (store, created_at);

-- Unanswered questions the merchant dismissed from the clusters (by the shopper message).
CREATE TABLE dismissed_questions (
    store      TEXT NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (store, message_id)
);

-- Shoppers the merchant marks as VIP (by the storefront's id): their chats are served first.
CREATE TABLE vip_shoppers (
    store      TEXT NOT NULL,
    shopper    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (store, shopper)
);
