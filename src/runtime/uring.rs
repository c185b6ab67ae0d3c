//! The io_uring layer: one ring per worker, a provided-buffer ring for receives, and the few operations
//! the worker submits. Every `unsafe` of the runtime lives in this file, each with its `// SAFETY:`.
//!
//! Memory the kernel writes lives in the ring itself (accept peer-address slots, the eventfd read
//! buffer) or in a `BufRing` whose mappings the ring keeps alive while registered, so the operations
//! that fill it are safe to call. The exceptions are the two sends (`send`, `send_msg`), which lend
//! caller memory and are `unsafe fn`.
//!
//! Teardown: `Ring::teardown` (also run by `Drop`) cancels every operation still in flight and reaps
//! completions until none is left, so no memory an operation points into is freed while the kernel may
//! still use it. If that takes longer than `TEARDOWN_BOUND`, the memory is leaked instead and the
//! caller is told (`teardown` returns `false`) so it leaks what it lent too (the worker's outboxes).

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

#[cfg(test)]
mod tests;

/// Buffer group id of the receive buffer ring (one per ring, so always the same id).
const RECV_GROUP: u16 = 0;

/// Longest `Drop`/`teardown` waits for cancelled operations to complete before leaking their memory.
pub const TEARDOWN_BOUND: Duration = Duration::from_secs(1);
/// While shutting down, a cancel is sent again when no completion arrived for this long.
const CANCEL_RETRY: Duration = Duration::from_millis(100);

/// `user_data` values whose top byte is this belong to the ring's own operations (the caller's
/// `user_data` must not use it; `caller_user_data` asserts so).
const RING_TAG: u64 = 0xFF;
/// Kinds of the ring's own operations (second byte of their `user_data`).
const RING_ACCEPT: u64 = 1;
const RING_CANCEL: u64 = 2;

fn ring_user_data(kind: u64, index: u64) -> u64 {
    RING_TAG << 56 | kind << 48 | index
}

/// The caller's `user_data`, checked not to collide with the ring's own (a collision would let `reap`
/// mistake it for an accept's completion and hand out a peer-address slot the kernel still writes).
fn caller_user_data(user_data: u64) -> u64 {
    assert!(
        user_data >> 56 != RING_TAG,
        "user_data {user_data:#x} uses the ring's reserved top byte"
    );
    user_data
}

/// Most accepts one ring keeps in flight (one bit each in `Ring::accept_pending`).
pub const MAX_ACCEPTS: usize = 64;

pub struct Ring {
    ring: IoUring,
    /// Operations pushed whose final completion (one without the `more` flag) is not reaped yet.
    in_flight: u64,
    /// The accept peer-address pool, `accepts` slots allocated by `Box::into_raw` (a raw pointer, not a
    /// `Box`, so moving the ring asserts no uniqueness over memory the kernel may be writing).
    accept_addrs: *mut AcceptAddr,
    accepts: usize,
    /// Bit `i`: accept `i` is in flight (its slot belongs to the kernel until its completion is reaped).
    accept_pending: u64,
    /// The caller's `user_data` of each accept, given back on its completion.
    accept_user_data: Box<[u64]>,
    /// Where eventfd reads write their 8 bytes (never read: the completion is the wake-up).
    wake_buf: *mut u64,
    /// Mappings of the registered buffer rings, kept until no receive can write into them.
    buf_rings: Vec<Rc<Mappings>>,
    /// Set when `teardown` gave up with operations still in flight: their memory is leaked, not freed.
    stuck: bool,
}

impl Ring {
    /// A ring for one worker thread: single issuer, task work deferred to our own `submit` calls (no
    /// interrupts of the worker), a sparse table of `files` direct descriptors that accepted sockets go
    /// straight into (no per-process file descriptor is used for a connection), and `accepts` (at most
    /// `MAX_ACCEPTS`) peer-address slots for the accepts kept in flight.
    pub fn new(entries: u32, files: u32, accepts: usize) -> io::Result<Ring> {
        assert!(accepts <= MAX_ACCEPTS, "at most {MAX_ACCEPTS} accepts");
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(entries * 4)
            .setup_submit_all()
            .build(entries)?;
        let pool: Box<[AcceptAddr]> = (0..accepts).map(|_| AcceptAddr::default()).collect();
        let ring = Ring {
            ring,
            in_flight: 0,
            accept_addrs: Box::into_raw(pool).cast::<AcceptAddr>(),
            accepts,
            accept_pending: 0,
            accept_user_data: vec![0; accepts].into_boxed_slice(),
            wake_buf: Box::into_raw(Box::new(0u64)),
            buf_rings: Vec::new(),
            stuck: false,
        };
        ring.ring.submitter().register_files_sparse(files)?;
        Ok(ring)
    }

    /// Operations submitted (or queued) whose final completion has not been reaped yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Queue one submission; when the SQ is full, submit what is queued first.
    ///
    /// # Safety
    /// Every pointer inside `entry` must stay valid until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: forwarded to the caller.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(error = %e, "io_uring submit failed while the SQ was full");
            }
        }
    }

    /// `push` of an operation the caller will see the completion of, under its own `user_data`.
    ///
    /// # Safety
    /// As `push`.
    unsafe fn push_for(&mut self, entry: squeue::Entry, user_data: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { self.push(entry.user_data(caller_user_data(user_data))) }
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
    /// handled while the ring is borrowed to submit more. Each final completion ends one in-flight
    /// operation; the ring's own operations are accounted here and not reported (an accept is reported
    /// under the caller's `user_data`, and its peer address is readable from then on: `accept_peer`).
    pub fn reap(&mut self, out: &mut Vec<(u64, i32, u32)>) {
        for c in self.ring.completion() {
            let (mut user_data, result, flags) = (c.user_data(), c.result(), c.flags());
            if !cqueue::more(flags) {
                self.in_flight -= 1;
            }
            if user_data >> 56 == RING_TAG {
                match (user_data >> 48) & 0xFF {
                    RING_ACCEPT => {
                        let i = (user_data & 0xFFFF) as usize;
                        self.accept_pending &= !(1 << i);
                        user_data = self.accept_user_data[i];
                    }
                    _ => continue,
                }
            }
            out.push((user_data, result, flags));
        }
    }

    /// Accept one connection on `listener` into an automatically chosen direct-descriptor slot, using
    /// peer-address slot `i` (< `accepts`) of the ring. Completion result: the slot, or `-errno`; after
    /// it, `accept_peer(i)` is the peer's address. Arming `i` again while it is in flight is a bug: it is
    /// caught by a debug assertion and otherwise ignored (logged).
    pub fn accept(&mut self, listener: RawFd, i: usize, user_data: u64) {
        assert!(i < self.accepts, "accept {i} of {}", self.accepts);
        if self.accept_pending & (1 << i) != 0 {
            debug_assert!(false, "accept {i} armed twice");
            tracing::error!(accept = i, "accept armed while in flight; ignored");
            return;
        }
        self.accept_user_data[i] = caller_user_data(user_data);
        // SAFETY: `i` is inside the pool (checked above), and no operation is using slot `i` (not
        // pending), so nothing else accesses it.
        let (storage, len) = unsafe {
            let addr = self.accept_addrs.add(i);
            (*addr).len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            (&raw mut (*addr).storage, &raw mut (*addr).len)
        };
        let entry = opcode::Accept::new(types::Fd(listener), storage.cast(), len)
            // No SOCK_CLOEXEC: a direct descriptor is not in the fd table, and the kernel refuses it.
            .file_index(Some(types::DestinationSlot::auto_target()))
            .build()
            .user_data(ring_user_data(RING_ACCEPT, i as u64));
        self.accept_pending |= 1 << i;
        // SAFETY: slot `i` is owned by the ring and freed only once no operation is in flight (or
        // leaked: `Drop`); `accept_pending` keeps Rust from touching it until the completion is reaped.
        unsafe { self.push(entry) }
    }

    /// The peer address accept `i` wrote, once its completion has been reaped (`None` while it is in
    /// flight, or when the accept failed or the address is neither IPv4 nor IPv6).
    pub fn accept_peer(&self, i: usize) -> Option<IpAddr> {
        if i >= self.accepts || self.accept_pending & (1 << i) != 0 {
            return None;
        }
        // SAFETY: `i` is inside the pool and no operation is writing slot `i` (not pending).
        unsafe { &*self.accept_addrs.add(i) }.peer()
    }

    /// Multishot receive on a connection: each completion carries one provided buffer (see
    /// `BufRing::take`). The operation ends when a completion comes without the `more` flag.
    pub fn recv_multishot(&mut self, slot: u32, user_data: u64) {
        let entry = opcode::RecvMulti::new(types::Fixed(slot), RECV_GROUP).build();
        // SAFETY: no user memory is referenced; buffers come from the registered buffer ring, whose
        // mappings the ring keeps alive (`buf_rings`).
        unsafe { self.push_for(entry, user_data) }
    }

    /// Send `len` bytes at `ptr` on a connection.
    ///
    /// # Safety
    /// The bytes must stay valid and unchanged until the completion is reaped, or until `teardown`
    /// returned `true` (if it returns `false`, they must never be freed).
    pub unsafe fn send(&mut self, slot: u32, ptr: *const u8, len: usize, user_data: u64) {
        let entry = opcode::Send::new(types::Fixed(slot), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        // SAFETY: forwarded to the caller.
        unsafe { self.push_for(entry, user_data) }
    }

    /// Queue a `sendmsg` of `msg` on a connection.
    ///
    /// # Safety
    /// `msg`, its iovecs and the memory they point to must stay valid and unchanged until the
    /// completion is reaped, or until `teardown` returned `true` (if it returns `false`, never freed).
    pub unsafe fn send_msg(&mut self, slot: u32, msg: *const libc::msghdr, user_data: u64) {
        let entry = opcode::SendMsg::new(types::Fixed(slot), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build();
        // SAFETY: forwarded to the caller.
        unsafe { self.push_for(entry, user_data) }
    }

    /// Cancel every operation in flight on a connection; each completes with `-ECANCELED` (or its
    /// result, if it finished first).
    pub fn cancel_all(&mut self, slot: u32, user_data: u64) {
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(slot)).all()).build();
        // SAFETY: no user memory is referenced.
        unsafe { self.push_for(entry, user_data) }
    }

    /// Close a connection's direct descriptor, freeing its slot for the next accept. The worker submits
    /// it only once no operation on the slot is in flight, so a reused slot never meets a stale one.
    pub fn close(&mut self, slot: u32, user_data: u64) {
        let entry = opcode::Close::new(types::Fixed(slot)).build();
        // SAFETY: no user memory is referenced.
        unsafe { self.push_for(entry, user_data) }
    }

    /// Shut down the sending side of a connection (after the close handshake's last bytes are sent).
    pub fn shutdown(&mut self, slot: u32, user_data: u64) {
        let entry = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_WR).build();
        // SAFETY: no user memory is referenced.
        unsafe { self.push_for(entry, user_data) }
    }

    /// Read 8 bytes from an eventfd (the cross-thread wake-up) into a buffer of the ring; the
    /// completion is the wake-up, the value is not kept.
    pub fn read_eventfd(&mut self, fd: RawFd, user_data: u64) {
        let entry = opcode::Read::new(types::Fd(fd), self.wake_buf.cast::<u8>(), 8).build();
        // SAFETY: `wake_buf` is owned by the ring and freed only once no operation is in flight (or
        // leaked: `Drop`); Rust never reads or writes it, so concurrent reads into it race with nothing.
        unsafe { self.push_for(entry, user_data) }
    }

    pub fn register_buf_ring(&mut self, bufs: &BufRing) -> io::Result<()> {
        // SAFETY: the ring memory is a page-aligned mmap of `entries` entries; its mappings stay
        // mapped while the ring holds a reference to them (pushed just below, kept until `Drop`).
        unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                bufs.ring as u64,
                bufs.entries,
                RECV_GROUP,
                0,
            )?;
        }
        self.buf_rings.push(bufs.maps.clone());
        Ok(())
    }

    /// Cancel every operation in flight and reap completions until none is left, for at most `bound`.
    /// Completions reaped here are dropped (the caller is tearing down). Returns `true` when nothing is
    /// in flight any more; `false` when the bound passed first: then the memory of the operations left
    /// must never be freed (the ring leaks its own on drop; the caller leaks what it lent to sends).
    pub fn teardown(&mut self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let mut reaped = Vec::new();
        let mut cancel = true;
        while self.in_flight > 0 {
            let now = Instant::now();
            if now >= deadline {
                tracing::error!(
                    in_flight = self.in_flight,
                    "io_uring operations still in flight at teardown; leaking their memory"
                );
                self.stuck = true;
                return false;
            }
            if cancel {
                let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(ring_user_data(RING_CANCEL, 0));
                // SAFETY: no user memory is referenced.
                unsafe { self.push(entry) }
            }
            if let Err(e) = self.submit_and_wait((deadline - now).min(CANCEL_RETRY)) {
                tracing::warn!(error = %e, "io_uring submit failed during teardown");
                std::thread::sleep(Duration::from_millis(1));
            }
            reaped.clear();
            let before = self.in_flight;
            self.reap(&mut reaped);
            // Nothing finished within the wait: cancel again (an operation may have been between
            // states when the last cancel looked).
            cancel = self.in_flight == before;
        }
        self.stuck = false;
        true
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.stuck || !self.teardown(TEARDOWN_BOUND) {
            // An operation may still write into the accept pool, the eventfd buffer or a receive
            // buffer: keep them allocated forever rather than free them under the kernel.
            std::mem::forget(std::mem::take(&mut self.buf_rings));
            return;
        }
        // SAFETY: both were allocated by `Box::into_raw` in `new` with these sizes, are freed only here,
        // once, and no operation is in flight, so the kernel no longer uses them.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.accept_addrs,
                self.accepts,
            )));
            drop(Box::from_raw(self.wake_buf));
        }
    }
}

/// One accept's peer-address slot (in the ring's pool, so its address is stable).
struct AcceptAddr {
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
    fn peer(&self) -> Option<IpAddr> {
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
///
/// Each buffer is either the kernel's (in the ring) or lent out: handed to us by a receive completion
/// (`take`) and readable (`get`) until it is given back (`give_back`). The `lent` bitset enforces this:
/// a buffer the kernel may be writing is never read, and no buffer is in the ring twice.
pub struct BufRing {
    ring: *mut types::BufRingEntry,
    entries: u16,
    buf_size: usize,
    /// The buffers: mapped and faulted in at start, so this fixed cost is resident from the first
    /// moment instead of growing into RSS as the ring cycles (docs/memory.md).
    memory: *mut u8,
    /// Our tail (buffers handed back), published to the kernel by `publish`.
    tail: u16,
    /// Bit `bid`: buffer `bid` is lent out (taken from a completion, not given back yet).
    lent: Box<[u64]>,
    /// Owner of both mappings; a `Ring` the buffers are registered with holds a clone, so they stay
    /// mapped until no receive can write into them, whichever of the two is dropped first.
    maps: Rc<Mappings>,
}

/// The buffer ring's two mappings (entries, buffers), unmapped when the last owner goes.
type Mappings = [Mapping; 2];

struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping a mapping made by `map_populated`, once; every `Ring` it was registered with
        // holds a clone of its owner (`Mappings`), so no operation can still write into it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

impl BufRing {
    /// `entries` buffers (a power of two ≤ 32768) of `buf_size` bytes each.
    pub fn new(entries: u16, buf_size: usize) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring_bytes = entries as usize * size_of::<types::BufRingEntry>();
        let ring = Mapping {
            ptr: map_populated(ring_bytes)?,
            len: ring_bytes,
        };
        let memory_bytes = entries as usize * buf_size;
        let memory = Mapping {
            ptr: map_populated(memory_bytes)?,
            len: memory_bytes,
        };
        let mut bufs = BufRing {
            ring: ring.ptr.cast(),
            entries,
            buf_size,
            memory: memory.ptr,
            tail: 0,
            lent: vec![0; (entries as usize).div_ceil(64)].into_boxed_slice(),
            maps: Rc::new([ring, memory]),
        };
        for bid in 0..entries {
            bufs.add(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// The provided buffer a receive completion carries (by its `flags`), now lent to us until
    /// `give_back`.
    pub fn take(&mut self, flags: u32) -> Option<u16> {
        let bid = cqueue::buffer_select(flags)?;
        if bid >= self.entries {
            debug_assert!(false, "kernel handed out buffer {bid} of {}", self.entries);
            tracing::error!(bid, "receive completion with an unknown buffer id; ignored");
            return None;
        }
        debug_assert!(!self.is_lent(bid), "buffer {bid} handed out twice");
        self.lent[bid as usize / 64] |= 1 << (bid % 64);
        Some(bid)
    }

    /// The `len` received bytes of lent buffer `bid`, mutable so frames can be unmasked in place. An
    /// id that is not lent out is a bug: caught by a debug assertion, otherwise an empty slice.
    pub fn get(&mut self, bid: u16, len: usize) -> &mut [u8] {
        if !self.is_lent(bid) {
            debug_assert!(false, "buffer {bid} read while not lent out");
            tracing::error!(bid, "buffer read while not lent out; ignored");
            return &mut [];
        }
        // SAFETY: buffer `bid` lies inside the mapping (lent ids are < entries); it is lent out, so the
        // kernel does not write it, and `&mut self` makes the slice the only reference to it.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.memory.add(bid as usize * self.buf_size),
                len.min(self.buf_size),
            )
        }
    }

    /// Hand lent buffer `bid` back to the kernel (visible after `publish`). Giving back an id that is
    /// not lent out (unknown, or given back already) is a bug: caught by a debug assertion, otherwise
    /// ignored and logged — it would put one buffer in the ring twice.
    pub fn give_back(&mut self, bid: u16) {
        if !self.is_lent(bid) {
            debug_assert!(false, "buffer {bid} given back while not lent out");
            tracing::error!(bid, "buffer given back while not lent out; ignored");
            return;
        }
        self.lent[bid as usize / 64] &= !(1 << (bid % 64));
        self.add(bid);
    }

    fn is_lent(&self, bid: u16) -> bool {
        bid < self.entries && self.lent[bid as usize / 64] & (1 << (bid % 64)) != 0
    }

    /// Put buffer `bid` (< entries, not in the ring) at our tail.
    fn add(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let addr = self.memory as u64 + bid as u64 * self.buf_size as u64;
        // SAFETY: `tail & mask` < entries, inside the mapping; the kernel does not read entries between
        // its head and our (unpublished) tail, and with each buffer in the ring at most once (`lent`)
        // our tail never laps its head.
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
