//! `swarm`: the binary. All of it is the library's `run`.

fn main() -> std::process::ExitCode {
    swarm_orchestrator::run()
}
