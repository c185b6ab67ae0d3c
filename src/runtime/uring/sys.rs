//! The plain syscalls next to the ring: CPU pinning, the wake eventfd, `RLIMIT_NOFILE`, a listener's
//! accept queue.

use std::io;
use std::os::fd::RawFd;

/// Pin the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An eventfd other threads write to wake a worker.
pub fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain syscall; the result is checked and owned exactly once.
    unsafe {
        let fd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(std::os::fd::FromRawFd::from_raw_fd(fd))
    }
}

/// Wake a worker: add 1 to its eventfd.
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd; the result only matters for logging
    // (EAGAIN means the counter is already non-zero, i.e. the worker is already woken).
    unsafe {
        libc::write(fd, (&raw const one).cast(), 8);
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (each ring's direct-descriptor table is capped by
/// it, so a shell's default soft limit of 1,024 would otherwise cap every worker). Returns the new limit.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write a live struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    nofile_limit()
}

/// The process's soft `RLIMIT_NOFILE`, which also caps each ring's direct-descriptor table.
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit writes into a live struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur
        } else {
            1024
        }
    }
}

/// `TCP_LISTEN` of the kernel's TCP states (`include/net/tcp_states.h`; libc does not name it).
const TCP_LISTEN: u8 = 10;

/// Connections waiting in a listening socket's accept queue (`TCP_INFO`'s `tcpi_unacked` of a
/// listener); None if the socket does not say.
pub fn accept_queue_len(listener: RawFd) -> Option<u32> {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            listener,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        (r == 0 && info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_unacked)
    }
}
