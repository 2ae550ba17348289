//! `donna-agent`: serves latency measurements on this machine to a donna elsewhere
//! (`donna --device agent:HOST:PORT`). The server is the `donna-agent` crate
//! (hosts/donna-agent); it is built here, next to `donna`, so one install gives both.

fn main() -> std::process::ExitCode {
    donna_agent::main()
}
