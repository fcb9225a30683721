-- Sentence embeddings of pack texts, by model and by the SHA-256 of the normalised text, so
-- that a new pack version embeds only the texts it adds.
CREATE TABLE embeddings (
    model TEXT NOT NULL,
    digest BLOB NOT NULL,
    vector BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (model, digest)
) WITHOUT ROWID;
