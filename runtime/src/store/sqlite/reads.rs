//! Reading the SQLite store: [`crate::store::reads`]' statements on the
//! read-only pool (every write is the writer's).

use super::rows;

crate::store::reads::portable_reads!(super::SqliteStore, reader);
