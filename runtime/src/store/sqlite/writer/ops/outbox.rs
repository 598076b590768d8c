//! The webhooks' writes on the writer: a [`Plan`] of
//! [`crate::store::outbox_sql`], run in the open batch's transaction.

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::statements::WriterConn;
use crate::store::StoreResult;
use crate::store::inventory_sql::Bind;
use crate::store::outbox_sql::{Done, Plan};

fn value(bind: &Bind) -> Value {
    match bind {
        Bind::Int(i) => Value::Integer(*i),
        Bind::Text(t) => Value::Text(t.clone()),
        Bind::MaybeInt(i) => i.map_or(Value::Null, Value::Integer),
        Bind::MaybeText(t) => t.clone().map_or(Value::Null, Value::Text),
    }
}

/// Run `plan`'s statements in order; a guarded plan whose first statement
/// changed no row stops there, having written nothing.
pub fn run_plan(conn: &WriterConn<'_>, plan: &Plan) -> StoreResult<Done> {
    let mut last = 0;
    for (i, s) in plan.stmts.iter().enumerate() {
        let mut statement = conn.prepare_cached(s.sql)?;
        let values = params_from_iter(s.binds.iter().map(value));
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
