//! [`ScratchDatabase`]: a fresh, uniquely named database on a PostgreSQL
//! server, for tests and benchmarks that must not touch anyone's data (several
//! engineers' test runs share one server). Dropped (with its connections) by
//! [`ScratchDatabase::drop_now`], or when the value is dropped.

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreResult;

/// The database connected to for `CREATE DATABASE` / `DROP DATABASE`.
const MAINTENANCE_DB: &str = "postgres";

/// A database created for one test or benchmark.
#[derive(Debug)]
pub struct ScratchDatabase {
    server: String,
    name: String,
    dropped: bool,
}

impl ScratchDatabase {
    /// Create a database named `<prefix>_<pid>_<n>_<random>` on the server of
    /// `server_url` (its own database name is ignored).
    pub async fn create(server_url: &str, prefix: &str) -> StoreResult<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{prefix}_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut admin = maintenance(server_url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await?;
        admin.close().await?;
        Ok(Self { server: server_url.to_string(), name, dropped: false })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL: the server URL with the database name replaced.
    pub fn url(&self) -> String {
        with_database(&self.server, &self.name)
    }

    /// Drop the database now, closing the connections still open to it.
    pub async fn drop_now(mut self) -> StoreResult<()> {
        self.dropped = true;
        drop_database(&self.server, &self.name).await
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await; a short-lived runtime on its own thread does it
        // (also works when the value is dropped inside another runtime).
        let (server, name) = (self.server.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping a scratch database");
            runtime.block_on(drop_database(&server, &name))
        })
        .join();
        if let Ok(Err(e)) = done {
            tracing::warn!(database = %self.name, error = %e, "cannot drop scratch database");
        }
    }
}

async fn maintenance(server_url: &str) -> StoreResult<PgConnection> {
    let options = PgConnectOptions::from_str(server_url)?.database(MAINTENANCE_DB);
    Ok(PgConnection::connect_with(&options).await?)
}

async fn drop_database(server_url: &str, name: &str) -> StoreResult<()> {
    let mut admin = maintenance(server_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
