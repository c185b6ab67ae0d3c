//! The io_uring layer: one ring per worker, a provided-buffer ring for receives, and the few operations
//! the worker submits. Every `unsafe` of the runtime lives in this module (this file, `buf_ring.rs`,
//! `sys.rs`), each with its `// SAFETY:`.
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

mod buf_ring;
mod sys;
#[cfg(test)]
mod tests;

pub use buf_ring::BufRing;
use buf_ring::Mappings;
pub use sys::{
    accept_queue_len, eventfd, eventfd_signal, nofile_limit, pin_to_cpu, raise_nofile_limit,
};

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

/// Whether a multishot operation stays armed after this completion.
pub fn more(flags: u32) -> bool {
    cqueue::more(flags)
}
