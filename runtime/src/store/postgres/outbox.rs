//! The PostgreSQL store's webhooks: [`crate::store::outbox_store`]'s reads on
//! the pool, each write plan in a transaction of its own.

use super::rows;
use crate::store::inventory_sql::Bind;
use crate::store::outbox_sql::Done;

crate::store::outbox_store::outbox_store!(super::PostgresStore, pool, sqlx::Postgres);

fn bound<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for bind in binds {
        query = match bind {
            Bind::Int(i) => query.bind(*i),
            Bind::Text(t) => query.bind(t.as_str()),
            Bind::MaybeInt(i) => query.bind(*i),
            Bind::MaybeText(t) => query.bind(t.as_deref()),
        };
    }
    query
}

impl super::PostgresStore {
    /// Run `plan`'s statements in one transaction; a guarded plan whose first
    /// statement changed no row is rolled back.
    async fn run_outbox_plan(&self, plan: Plan) -> StoreResult<Done> {
        let mut tx = self.pool.begin().await?;
        let mut last = 0;
        for (i, s) in plan.stmts.iter().enumerate() {
            let query = bound(sqlx::query(s.sql), &s.binds);
            if plan.returns_id && i + 1 == plan.stmts.len() {
                last = query.fetch_one(&mut *tx).await?.try_get(0)?;
            } else {
                last = query.execute(&mut *tx).await?.rows_affected() as i64;
            }
            if i == 0 && plan.guarded && last == 0 {
                return Ok(Done { written: false, last });
            }
        }
        tx.commit().await?;
        Ok(Done { written: true, last })
    }
}
