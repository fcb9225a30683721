-- Stores, their merchants' API keys, and every version of every store's pack.
CREATE TABLE stores (
    id         TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);

-- Keys are stored as SHA-256 hex digests; the key itself is shown once, at creation.
CREATE TABLE merchant_keys (
    key_hash   TEXT PRIMARY KEY,
    store      TEXT NOT NULL REFERENCES stores (id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX merchant_keys_by_store ON merchant_keys (store);

-- Immutable pack versions, numbered from 1 per store. `content` is the pack as mibot's JSON.
CREATE TABLE pack_versions (
    store       TEXT NOT NULL REFERENCES stores (id),
    version     INTEGER NOT NULL,
    format      TEXT NOT NULL,
    source      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    faq_count     INTEGER NOT NULL,
    product_count INTEGER NOT NULL,
    content     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (store, version)
);

-- The version each store serves.
CREATE TABLE active_packs (
    store        TEXT PRIMARY KEY REFERENCES stores (id),
    version      INTEGER NOT NULL,
    activated_at INTEGER NOT NULL,
    FOREIGN KEY (store, version) REFERENCES pack_versions (store, version)
);
