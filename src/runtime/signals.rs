//! Process signals, handled synchronously: the signals are blocked in every thread (the mask is set
//! before any thread starts and inherited), and the main thread waits for them with `sigwait`.

/// The signals Ringcast acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop gracefully (the server drains over `--drain-window`).
    Terminate,
    /// SIGINT (Ctrl-C in a terminal): stop soon (the server drains for at most a second).
    Interrupt,
    /// SIGHUP: reload (certificates).
    Reload,
    /// SIGCHLD: a child process exited (supervisor only).
    Child,
}

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

impl Signal {
    /// SIGTERM or SIGINT.
    pub fn is_stop(self) -> bool {
        matches!(self, Signal::Terminate | Signal::Interrupt)
    }
}

/// Block the signals in the calling thread and every thread it starts afterwards.
pub fn block() {
    let set = set();
    // SAFETY: changes only this thread's signal mask, from a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Unblock them again (in a child process, before exec).
pub fn unblock() {
    let set = set();
    // SAFETY: as in `block`.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for the next signal.
pub fn wait() -> Signal {
    let set = set();
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits on a valid set and writes the signal number into a live int.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        return match sig {
            libc::SIGHUP => Signal::Reload,
            libc::SIGCHLD => Signal::Child,
            libc::SIGINT => Signal::Interrupt,
            _ => Signal::Terminate,
        };
    }
}

/// Wait for the next signal, at most `timeout`.
pub fn wait_timeout(timeout: std::time::Duration) -> Option<Signal> {
    let set = set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: waits on a valid set with a valid timeout; no siginfo is requested.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGHUP => Some(Signal::Reload),
        libc::SIGCHLD => Some(Signal::Child),
        libc::SIGTERM => Some(Signal::Terminate),
        libc::SIGINT => Some(Signal::Interrupt),
        _ => None,
    }
}

/// Send `sig` to process `pid`.
pub fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: plain syscall on a pid we started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}
