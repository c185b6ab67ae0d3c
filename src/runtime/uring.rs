//! The io_uring layer: one ring per worker, a provided-buffer ring for receives, and the few operations
//! the worker submits. Every `unsafe` of the runtime lives in this file, each with its `// SAFETY:`.
//!
//! Ownership rule the worker upholds (see `Worker`): memory whose address goes into a submission
//! (accept address slots, an outbox's iovecs and `msghdr`) stays allocated and unmoved until that
//! submission's completion has been reaped.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// Buffer group id of the receive buffer ring (one per ring, so always the same id).
const RECV_GROUP: u16 = 0;

pub struct Ring {
    ring: IoUring,
}

impl Ring {
    /// A ring for one worker thread: single issuer, task work deferred to our own `submit` calls (no
    /// interrupts of the worker), and a sparse table of `files` direct descriptors that accepted
    /// sockets go straight into (no per-process file descriptor is used for a connection).
    pub fn new(entries: u32, files: u32) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(entries * 4)
            .setup_submit_all()
            .build(entries)?;
        ring.submitter().register_files_sparse(files)?;
        Ok(Ring { ring })
    }

    /// Queue one submission; when the SQ is full, submit what is queued first.
    ///
    /// # Safety
    /// Every pointer inside `entry` must stay valid until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: forwarded to the caller.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(error = %e, "io_uring submit failed while the SQ was full");
            }
        }
    }

    /// Submit everything queued and wait until at least one completion arrives or `timeout` passes.
    pub fn submit_and_wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Move every completion out of the CQ into `out` as `(user_data, result, flags)`, so they can be
    /// handled while the ring is borrowed to submit more.
    pub fn reap(&mut self, out: &mut Vec<(u64, i32, u32)>) {
        out.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
    }

    /// Accept one connection on `listener` into an automatically chosen direct-descriptor slot; the
    /// peer address is written to `addr`/`addrlen`. Completion result: the slot, or `-errno`.
    pub fn accept(&mut self, listener: RawFd, addr: &mut AcceptAddr, user_data: u64) {
        addr.len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let entry = opcode::Accept::new(
            types::Fd(listener),
            (&raw mut addr.storage).cast::<libc::sockaddr>(),
            &raw mut addr.len,
        )
        // No SOCK_CLOEXEC: a direct descriptor is not in the fd table, and the kernel refuses the flag.
        .file_index(Some(types::DestinationSlot::auto_target()))
        .build()
        .user_data(user_data);
        // SAFETY: `addr` lives in the worker's boxed accept pool, which outlives the ring's use of it:
        // the pool is dropped only with the worker, after the ring.
        unsafe { self.push(entry) }
    }

    /// Multishot receive on a connection: each completion carries one provided buffer (see
    /// `BufRing::take`). The operation ends when a completion comes without the `more` flag.
    pub fn recv_multishot(&mut self, slot: u32, user_data: u64) {
        let entry = opcode::RecvMulti::new(types::Fixed(slot), RECV_GROUP)
            .build()
            .user_data(user_data);
        // SAFETY: no user memory is referenced; buffers come from the registered buffer ring.
        unsafe { self.push(entry) }
    }

    /// Send `len` bytes at `ptr` on a connection.
    ///
    /// # Safety
    /// The bytes must stay valid and unchanged until the completion.
    pub unsafe fn send(&mut self, slot: u32, ptr: *const u8, len: usize, user_data: u64) {
        let entry = opcode::Send::new(types::Fixed(slot), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        // SAFETY: forwarded to the caller.
        unsafe { self.push(entry) }
    }

    /// Queue a `sendmsg` of `msg` on a connection.
    ///
    /// # Safety
    /// `msg`, its iovecs and the memory they point to must stay valid and unchanged until the completion.
    pub unsafe fn send_msg(&mut self, slot: u32, msg: *const libc::msghdr, user_data: u64) {
        let entry = opcode::SendMsg::new(types::Fixed(slot), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(user_data);
        // SAFETY: forwarded to the caller.
        unsafe { self.push(entry) }
    }

    /// Cancel every operation in flight on a connection; each completes with `-ECANCELED` (or its
    /// result, if it finished first).
    pub fn cancel_all(&mut self, slot: u32, user_data: u64) {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(slot)).all())
            .build()
            .user_data(user_data);
        // SAFETY: no user memory is referenced.
        unsafe { self.push(entry) }
    }

    /// Close a connection's direct descriptor, freeing its slot for the next accept. The worker submits
    /// it only once no operation on the slot is in flight, so a reused slot never meets a stale one.
    pub fn close(&mut self, slot: u32, user_data: u64) {
        let entry = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(user_data);
        // SAFETY: no user memory is referenced.
        unsafe { self.push(entry) }
    }

    /// Shut down the sending side of a connection (after the close handshake's last bytes are sent).
    pub fn shutdown(&mut self, slot: u32, user_data: u64) {
        let entry = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_WR)
            .build()
            .user_data(user_data);
        // SAFETY: no user memory is referenced.
        unsafe { self.push(entry) }
    }

    /// Read 8 bytes from an eventfd into `buf` (the cross-thread wake-up).
    pub fn read_eventfd(&mut self, fd: RawFd, buf: &mut u64, user_data: u64) {
        let entry = opcode::Read::new(types::Fd(fd), (buf as *mut u64).cast::<u8>(), 8)
            .build()
            .user_data(user_data);
        // SAFETY: `buf` is a field of the boxed worker state that lives as long as the ring.
        unsafe { self.push(entry) }
    }

    pub fn register_buf_ring(&mut self, bufs: &BufRing) -> io::Result<()> {
        // SAFETY: the ring memory is a page-aligned mmap of `entries` entries that lives in `BufRing`,
        // which the worker keeps until after the ring is dropped (field order in `Worker`).
        unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                bufs.ring as u64,
                bufs.entries,
                RECV_GROUP,
                0,
            )
        }
    }
}

/// One accept's peer-address slot (kept in a boxed pool so its address is stable).
pub struct AcceptAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Default for AcceptAddr {
    fn default() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        AcceptAddr {
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }
}

impl AcceptAddr {
    /// The accepted peer's IP address.
    pub fn peer(&self) -> Option<std::net::IpAddr> {
        let family = self.storage.ss_family as libc::c_int;
        if family == libc::AF_INET && self.len as usize >= size_of::<libc::sockaddr_in>() {
            // SAFETY: the kernel wrote an AF_INET address, so the storage holds a sockaddr_in.
            let sin = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
            Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into())
        } else if family == libc::AF_INET6 && self.len as usize >= size_of::<libc::sockaddr_in6>() {
            // SAFETY: the kernel wrote an AF_INET6 address, so the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
            Some(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).to_canonical())
        } else {
            None
        }
    }
}

/// Receive buffers the kernel picks from when data arrives (a provided-buffer ring): idle connections
/// hold no buffer at all, which is what keeps an idle socket's user-space cost to its `Conn` slot.
pub struct BufRing {
    ring: *mut types::BufRingEntry,
    entries: u16,
    buf_size: usize,
    /// The buffers: mapped and faulted in at start, so this fixed cost is resident from the first
    /// moment instead of growing into RSS as the ring cycles (docs/memory.md).
    memory: *mut u8,
    /// Our tail (buffers handed back), published to the kernel by `publish`.
    tail: u16,
}

impl BufRing {
    /// `entries` buffers (a power of two ≤ 32768) of `buf_size` bytes each.
    pub fn new(entries: u16, buf_size: usize) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring_bytes = entries as usize * size_of::<types::BufRingEntry>();
        let ring = map_populated(ring_bytes)?;
        let memory = match map_populated(entries as usize * buf_size) {
            Ok(memory) => memory,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above, once.
                unsafe { libc::munmap(ring.cast(), ring_bytes) };
                return Err(e);
            }
        };
        let mut bufs = BufRing {
            ring: ring.cast(),
            entries,
            buf_size,
            memory,
            tail: 0,
        };

        for bid in 0..entries {
            bufs.give_back(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// The `len` received bytes of buffer `bid`, mutable so frames can be unmasked in place.
    pub fn get(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.entries, "buffer id {bid} out of range");
        // SAFETY: buffer `bid` lies inside the mapping (checked above); `&mut self` makes the slice the
        // only reference to it, and the kernel does not write a buffer it has not been given back.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.memory.add(bid as usize * self.buf_size),
                len.min(self.buf_size),
            )
        }
    }

    /// Hand buffer `bid` back to the kernel (visible after `publish`).
    pub fn give_back(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let addr = self.memory as u64 + bid as u64 * self.buf_size as u64;
        // SAFETY: `tail & mask` < entries, inside the mapping; the kernel does not read entries between
        // its head and our (unpublished) tail.
        let entry = unsafe { &mut *self.ring.add((self.tail & mask) as usize) };
        entry.set_addr(addr);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make the buffers given back so far visible to the kernel.
    pub fn publish(&mut self) {
        // SAFETY: the tail field overlays entry 0's reserved field (io_uring ABI); a release store
        // orders the entry writes above before the kernel sees the new tail.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmapping the two mappings made in `new`, once; the ring using them is already dropped.
        unsafe {
            libc::munmap(
                self.ring.cast(),
                self.entries as usize * size_of::<types::BufRingEntry>(),
            );
            libc::munmap(self.memory.cast(), self.entries as usize * self.buf_size);
        }
    }
}

/// A fresh anonymous private mapping of `len` bytes, faulted in (`MAP_POPULATE`).
fn map_populated(len: usize) -> io::Result<*mut u8> {
    // SAFETY: a new anonymous mapping references no existing memory; failure is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// Which provided buffer a receive completion carries.
pub fn buffer_id(flags: u32) -> Option<u16> {
    cqueue::buffer_select(flags)
}

/// Whether a multishot operation stays armed after this completion.
pub fn more(flags: u32) -> bool {
    cqueue::more(flags)
}

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
