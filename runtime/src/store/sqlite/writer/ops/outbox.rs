//! The webhooks' writes on the writer: a [`Plan`] of
//! [`crate::store::outbox_sql`], run in the open batch's transaction.

use rusqlite::params_from_iter;

use super::statements::WriterConn;
use crate::store::StoreResult;
use crate::store::outbox_sql::{Done, Plan};

/// Run `plan`'s statements in order; a guarded plan whose first statement
/// changed no row stops there, having written nothing.
pub fn run_plan(conn: &WriterConn<'_>, plan: &Plan) -> StoreResult<Done> {
    let mut last = 0;
    for (i, s) in plan.stmts.iter().enumerate() {
        let mut statement = conn.prepare_cached(s.sql)?;
        let values = params_from_iter(&s.binds);
        if plan.returns_id && i + 1 == plan.stmts.len() {
            last = statement.query_row(values, |row| row.get(0))?;
        } else {
            last = statement.execute(values)? as i64;
        }
        if i == 0 && plan.guarded && last == 0 {
            return Ok(Done { written: false, last });
        }
    }
    Ok(Done { written: true, last })
}
