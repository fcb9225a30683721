-- mibot's schema on PostgreSQL: the same tables and meanings as the SQLite migrations, in one
-- step. Times are milliseconds since the Unix epoch; ids of conversations are UUIDs as text.

CREATE TABLE stores (
    id              TEXT PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    -- The secret the storefront signs its shoppers' member ids with (HMAC-SHA256).
    identity_secret TEXT
);

-- Keys are stored as SHA-256 hex digests; the key itself is shown once, at creation.
CREATE TABLE merchant_keys (
    key_hash   TEXT PRIMARY KEY,
    store      TEXT NOT NULL REFERENCES stores (id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX merchant_keys_by_store ON merchant_keys (store);

-- Immutable pack versions, numbered from 1 per store. `content` is the pack as mibot's JSON.
CREATE TABLE pack_versions (
    store         TEXT NOT NULL REFERENCES stores (id),
    version       BIGINT NOT NULL,
    format        TEXT NOT NULL,
    source        TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    faq_count     BIGINT NOT NULL,
    product_count BIGINT NOT NULL,
    content       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (store, version)
);

-- The version each store serves.
CREATE TABLE active_packs (
    store        TEXT PRIMARY KEY REFERENCES stores (id),
    version      BIGINT NOT NULL,
    activated_at BIGINT NOT NULL,
    FOREIGN KEY (store, version) REFERENCES pack_versions (store, version)
);

-- Conversations, with the bot's state between messages and the escalation queue's.
CREATE TABLE conversations (
    id                    TEXT PRIMARY KEY,
    store                 TEXT NOT NULL,
    resume_token          TEXT NOT NULL UNIQUE,
    status                TEXT NOT NULL,
    handoff_reason        TEXT,
    consecutive_fallbacks BIGINT NOT NULL DEFAULT 0,
    product               TEXT,
    shopper               TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    queued_at             BIGINT,
    priority              BIGINT NOT NULL DEFAULT 0,
    skill_group           TEXT,
    agent                 TEXT,
    assigned_at           BIGINT,
    closed_at             BIGINT,
    rating                BIGINT,
    rating_comment        TEXT
);
CREATE INDEX conversations_by_status ON conversations (status);
CREATE INDEX conversations_by_store_created ON conversations (store, created_at);
CREATE INDEX conversations_by_shopper ON conversations (store, shopper, created_at);

CREATE TABLE messages (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    role            TEXT NOT NULL,
    text            TEXT NOT NULL,
    client_msg_id   TEXT,
    in_reply_to     BIGINT REFERENCES messages (id),
    trace           TEXT,
    author          TEXT,
    kind            TEXT,
    entry           TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (conversation_id, client_msg_id)
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);

-- A conversation's updated_at follows its newest message, inside the statement that stores it.
CREATE FUNCTION messages_touch_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at WHERE id = NEW.conversation_id;
    RETURN NEW;
END;
$$;
CREATE TRIGGER messages_touch_conversation AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_touch_conversation();

-- Human agents.
CREATE TABLE agents (
    store      TEXT NOT NULL REFERENCES stores (id),
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    groups     TEXT NOT NULL DEFAULT '',
    max_chats  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (store, name)
);

CREATE TABLE feedback (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store           TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    message_id      BIGINT NOT NULL REFERENCES messages (id),
    source          TEXT NOT NULL,   -- 'shopper' (a vote) or 'agent' (a flag, 拉铃)
    helpful         BOOLEAN,         -- shopper votes: up or down; agent flags: false
    note            TEXT,
    author          TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (message_id, source)
);
CREATE INDEX feedback_by_store ON feedback (store, created_at);

-- Unanswered questions the merchant dismissed from the clusters (by the shopper message).
CREATE TABLE dismissed_questions (
    store      TEXT NOT NULL,
    message_id BIGINT NOT NULL REFERENCES messages (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (store, message_id)
);

-- Shoppers the merchant marks as VIP (by the storefront's id): their chats are served first.
CREATE TABLE vip_shoppers (
    store      TEXT NOT NULL,
    shopper    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (store, shopper)
);

-- Spike alerts, one row per episode, and each store's webhook.
CREATE TABLE alerts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store            TEXT NOT NULL,
    topic            TEXT NOT NULL,
    label            TEXT NOT NULL,
    samples          TEXT NOT NULL,   -- JSON array: up to five of the questions
    messages         TEXT NOT NULL,   -- JSON array: the shopper messages seen (newest 1,000)
    count            BIGINT NOT NULL,
    expected         DOUBLE PRECISION NOT NULL,
    started_at       BIGINT NOT NULL,
    last_seen_at     BIGINT NOT NULL,
    ended_at         BIGINT,
    webhook          TEXT,
    webhook_attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX alerts_by_store ON alerts (store, started_at);

CREATE TABLE webhooks (
    store      TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Sentence embeddings of pack texts, by model and the SHA-256 of the normalised text.
CREATE TABLE embeddings (
    model      TEXT NOT NULL,
    digest     BYTEA NOT NULL,
    vector     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (model, digest)
);
