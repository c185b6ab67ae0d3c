//! Child processes of the CLI (`demo`'s redis-server, server and feed; the tests' redis-server): started
//! so that they die with us, stopped by PID with a bounded wait.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::runtime::signals;

/// Make `cmd`'s child receive the default signal mask (ours may block SIGTERM/SIGINT for `sigwait`) and
/// SIGTERM when the thread that started it exits (so a killed parent leaves no orphans).
pub fn guard(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (pthread_sigmask, prctl).
    unsafe {
        cmd.pre_exec(|| {
            signals::unblock();
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        })
    }
}

/// Stop `child` by PID: SIGTERM, up to `grace` for it to exit, then SIGKILL. Returns whether it exited
/// on SIGTERM (or had already exited).
pub fn stop(child: &mut Child, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    signals::kill(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Poll `ready` every 50 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
