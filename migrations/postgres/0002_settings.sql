-- Deployment-wide settings made once, such as the key opaque ids are encrypted under
-- (src/ids.rs). Secrets here are owner-only like the rest of the database.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
