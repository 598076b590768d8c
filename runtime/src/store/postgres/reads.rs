//! Reading the PostgreSQL store: [`crate::store::reads`]' statements on the
//! pool.

use super::rows;

crate::store::reads::portable_reads!(super::PostgresStore, pool);
