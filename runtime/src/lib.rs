//! jobstack: a WebAssembly-plugin task runtime for fleet inventory and management.
//!
//! One daemon hosts a **scheduler** and an **engine**. Each task type is a
//! sandboxed WebAssembly component implementing the `task` world of `wit/`.
//!
//! - [`engine`]: loads plugins and runs them in pooled (1:N) or dedicated (1:1)
//!   executions with fuel and wall-clock timeouts, limits and capability grants.
//! - [`scheduler`]: tasks, runs, job parts, leases with fencing, expiry,
//!   retries, priorities and recurrence.
//! - [`store`]: the scheduler's durable state behind one trait (SQLite embedded,
//!   PostgreSQL for several daemons).
//! - [`agent`]: the pull loop of an agent: lease, execute, heartbeat, spool.
//! - [`api`]: the REST/JSON API (agent protocol, admin, operations).
//! - [`protocol`]: the routes and JSON bodies of that API, shared by the
//!   daemon, the agent, the client and the CLI.
//! - [`artifacts`]: content-addressed files (software to deploy) on disk.
//! - [`module_catalog`]: the uploaded plugin modules, kept in the store and
//!   cached on disk, which the API serves and the daemon splits runs with.
//! - [`client`]: the HTTP client of that API, for agents and the admin CLI.
//! - [`daemon`]: `jobstack serve`, the process that hosts them all.
//! - [`web`]: the management UI the daemon serves at `/`.
//! - [`bench`]: the measurements behind `jobstack bench`.

pub mod agent;
pub mod api;
pub mod artifacts;
pub mod bench;
pub mod client;
pub mod daemon;
pub mod engine;
pub mod module_catalog;
pub mod protocol;
pub mod scheduler;
pub mod store;
pub mod web;
