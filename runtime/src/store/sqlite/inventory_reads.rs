//! Reading the inventory of the SQLite store: [`crate::store::inventory_reads`]'
//! statements on its read pool.

use crate::store::inventory_reads::inventory_reads;

/// A result waiting for processing, in the words of the partial index
/// `results_to_process`.
const PENDING: &str = "x.processing IS NULL AND x.applied = 1 AND x.status = 'finished'";

inventory_reads!(super::SqliteStore, reader, sqlx::Sqlite, PENDING);
