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
    // (pthread_sigmask, prctl, getppid).
    unsafe {
        cmd.pre_exec(|| {
            signals::unblock();
            Ok(())
        });
    }
    die_with_parent(cmd)
}

/// Make `cmd`'s child receive SIGTERM when the thread that started it exits, and not start at all if
/// its parent is already gone by then: a parent killed with SIGKILL (which it cannot pass on) leaves no
/// orphans. The signal mask is left as it is (a server child blocks and `sigwait`s the same set).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls (prctl,
    // getppid).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            // The parent may have died between fork and prctl: then nobody would send the signal.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent process exited"));
            }
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
