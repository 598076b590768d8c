-- jobstack schema, version 3 (PostgreSQL): the bytes of every uploaded plugin
-- module, so that each daemon on the database can serve a module to its agents
-- and split runs with it, whichever daemon received the upload. A daemon's own
-- module directory is a cache of this table.
CREATE TABLE modules (
    sha256 TEXT  PRIMARY KEY,
    bytes  BYTEA NOT NULL
);
