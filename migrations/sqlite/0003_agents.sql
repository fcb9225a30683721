-- Human agents, and the escalation queue's state on each conversation.
CREATE TABLE agents (
    store       TEXT NOT NULL REFERENCES stores (id),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    groups      TEXT NOT NULL DEFAULT '',
    max_chats   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (store, name)
);

-- queued_at: when the conversation (last) entered the queue; priority: higher first;
-- skill_group: who may take it; agent: who owns it now (with_agent), by name.
ALTER TABLE conversations ADD COLUMN queued_at INTEGER;
ALTER TABLE conversations ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN skill_group TEXT;
ALTER TABLE conversations ADD COLUMN agent TEXT;
ALTER TABLE conversations ADD COLUMN assigned_at INTEGER;
ALTER TABLE conversations ADD COLUMN rating INTEGER;
ALTER TABLE conversations ADD COLUMN rating_comment TEXT;

-- Which agent wrote an agent message.
ALTER TABLE messages ADD COLUMN author TEXT;
