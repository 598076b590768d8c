//! jobstack: a WebAssembly-plugin task runtime for fleet inventory and management.
//!
//! A daemon (`jobstack serve`) hosts a **scheduler**, the REST **API** with its
//! management UI, and an **engine** that splits runs into job parts; agents
//! lease the parts and run them in their own engine (the daemon's local agent
//! in-process, remote `jobstack agent`s over the API). Each task type is a sandboxed WebAssembly
//! component implementing the `task` world of `wit/`. Several daemons may
//! share one PostgreSQL database.
//!
//! - [`engine`]: loads plugins and runs them in pooled (1:N) or dedicated (1:1)
//!   executions with fuel and wall-clock timeouts, limits and capability grants.
//! - [`scheduler`]: tasks, runs, job parts, leases with fencing, expiry,
//!   retries, priorities and recurrence, and the [`Store`](scheduler::store::Store)
//!   trait it keeps them behind.
//! - [`store`]: the backends of that trait: SQLite (embedded, the default) and
//!   PostgreSQL (several daemons on one database).
//! - [`module_catalog`]: the uploaded plugin modules, kept in the store and
//!   cached on disk, which the API serves and the daemon splits runs with.
//! - [`inventory`]: the data processor's end: assets merged from results,
//!   their history, and the selectors tasks take their targets from.
//! - [`notify`]: webhooks, signed, delivered from a durable outbox.
//! - [`artifacts`]: content-addressed files (software to deploy) on disk.
//! - [`protocol`]: the routes and JSON bodies of the API, shared by the daemon,
//!   the agent, the client and the admin CLI.
//! - [`api`]: the daemon's REST/JSON API (agent and admin routes, events,
//!   health, metrics, OpenAPI), served with axum.
//! - [`web`]: the management UI the daemon serves at `/`.
//! - [`daemon`]: `jobstack serve`, the process that hosts them all.
//! - [`agent`]: the pull loop of an agent: lease, execute, heartbeat, spool.
//! - [`client`]: the HTTP client of the API, for agents and the admin CLI.
//! - [`bench`](mod@bench): the measurements behind `jobstack bench`.
//!
//! No two of these modules import each other, directly or through others
//! (`tests/module_cycles.rs` checks it). The command line is the binary's
//! (`src/main.rs`, `src/cli/`).

pub mod agent;
pub mod api;
pub mod artifacts;
pub mod bench;
pub mod client;
pub mod daemon;
pub mod engine;
pub mod inventory;
pub mod module_catalog;
pub mod notify;
pub mod protocol;
pub mod scheduler;
pub mod store;
pub mod web;
