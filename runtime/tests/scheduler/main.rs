//! Scheduler tests against real stores: every test runs once per backend
//! (see `harness::store_tests!`), with a manual clock instead of sleeps.

mod harness;

mod admin;
mod chains;
mod inventory;
mod leasing;
mod outbox;
mod policy;
mod recurrence;
mod results;
mod scenario;
