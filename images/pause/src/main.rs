//! The pause process: holds a task's network namespace open.
//!
//! It runs as PID 1 of the sandbox container, so it must do the two jobs
//! the kernel leaves to PID 1: handle termination signals itself (the kernel
//! ignores default-action signals sent to PID 1) and reap orphaned children
//! that get re-parented to it. Everything else is sleeping in `pause()`.
//!
//! std has no signal API, so a few libc functions are declared by hand; std
//! links libc anyway, so this adds no dependency.

use std::os::raw::c_int;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;
const SIG_ERR: usize = !0;

extern "C" {
    // glibc's signal() has BSD semantics: the handler stays installed and
    // interrupted system calls restart, which is what we want here.
    fn signal(signum: c_int, handler: usize) -> usize;
    fn pause() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn _exit(status: c_int) -> !;
}

/// SIGTERM/SIGINT: leave at once. `_exit` is async-signal-safe, unlike
/// anything that would run destructors or flush stdio.
extern "C" fn on_down(_sig: c_int) {
    unsafe { _exit(0) }
}

/// SIGCHLD: reap every exited child. Several exits may coalesce into one
/// signal, hence the loop. `waitpid` is async-signal-safe.
extern "C" fn on_child(_sig: c_int) {
    let mut status: c_int = 0;
    while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
}

fn install(signum: c_int, handler: extern "C" fn(c_int)) -> Result<(), String> {
    if unsafe { signal(signum, handler as usize) } == SIG_ERR {
        return Err(format!(
            "installing handler for signal {signum}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("swarm-pause {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let installed = install(SIGINT, on_down)
        .and_then(|_| install(SIGTERM, on_down))
        .and_then(|_| install(SIGCHLD, on_child));
    if let Err(e) = installed {
        eprintln!("pause: {e}");
        std::process::exit(1);
    }
    // Reap anything that exited before the handler was in place.
    on_child(SIGCHLD);
    loop {
        // Returns after each handled signal (SIGCHLD); go back to sleep.
        unsafe { pause() };
    }
}
