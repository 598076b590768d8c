//! The `jobstack` command, one binary for every role:
//!
//! - `jobstack serve`: the daemon (scheduler, API, management UI and its own
//!   local agent on one port);
//! - `jobstack agent`: a remote agent that registers with a daemon and pulls
//!   job parts;
//! - the admin commands, clients of the daemon's API: `plugin push|list`,
//!   `artifact push|list`, `task create|edit|list|show|runs|run|suspend|resume|
//!   cancel|rerun|watch` and `results`;
//! - plugin authoring without a daemon: `plugin inspect` and `exec`;
//! - `jobstack bench engine|scheduler|e2e`: the measurements.
//!
//! The command line is parsed and dispatched in [`cli`]; everything it runs
//! lives in the `jobstack` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
