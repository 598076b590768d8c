-- jobstack schema, version 3 (SQLite): the bytes of every uploaded plugin
-- module (the same table as PostgreSQL's; the data directory's module
-- directory is a cache of it).
CREATE TABLE modules (
    sha256 TEXT PRIMARY KEY,
    bytes  BLOB NOT NULL
);
