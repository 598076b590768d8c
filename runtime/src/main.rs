//! The `jobstack` command: plugin authoring tools, benchmarks and (later) the
//! daemon and the agent.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
