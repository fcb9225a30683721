-- Conversations, their messages, and the state the bot keeps between messages.
CREATE TABLE conversations (
    id                    TEXT PRIMARY KEY,
    store                 TEXT NOT NULL,
    resume_token          TEXT NOT NULL UNIQUE,
    status                TEXT NOT NULL,
    handoff_reason        TEXT,
    consecutive_fallbacks INTEGER NOT NULL DEFAULT 0,
    product               TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX conversations_by_store_status ON conversations (store, status, updated_at);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    role            TEXT NOT NULL,
    text            TEXT NOT NULL,
    client_msg_id   TEXT,
    in_reply_to     INTEGER REFERENCES messages (id),
    trace           TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, client_msg_id)
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
