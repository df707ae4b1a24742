//! Named crash points, for the tests that kill the daemon at each step of
//! init, join and snapshot install: with `SWARM_CRASH_AT=NAME` in its
//! environment, the daemon aborts (as a power cut would stop it: no
//! destructors, no flushes) when it reaches the point `NAME`.
//!
//! Points, in the order they come: `init-keyed`, `init-bootstrapped`,
//! `init-recorded`,
//! `join-answered`, `join-identified`, `join-certified`, `snapshot-install`.

/// Abort here if the environment names this point.
pub fn point(name: &str) {
    if std::env::var("SWARM_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("SWARM_CRASH_AT={name}: aborting at this crash point");
        std::process::abort();
    }
}
