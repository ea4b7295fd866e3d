//! Crash points for the fault tests.
//!
//! `SECKILL_CRASH_AT=<name>` makes the process abort the first time it reaches the point of
//! that name: no destructor runs, nothing is flushed, the HTTP answer is never sent, as when
//! the process is killed there. The tests use it to stop a process exactly between two
//! writes that no transaction spans (the MySQL close of an order and the Redis return of its
//! units; the payment row and the charge request), which a SIGKILL from outside could only
//! hit by luck. Unset (always, in production) each point costs one load of a cached `None`.

use std::sync::OnceLock;

/// Aborts the process if `SECKILL_CRASH_AT` names this point.
pub fn hit(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("SECKILL_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        eprintln!("SECKILL_CRASH_AT={name}: aborting here");
        std::process::abort();
    }
}
