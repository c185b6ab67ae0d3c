//! The receive buffer ring (`BufRing`): buffers the kernel picks from, and the two mappings behind it.

use std::io;
use std::rc::Rc;

use io_uring::{cqueue, types};

/// Receive buffers the kernel picks from when data arrives (a provided-buffer ring): idle connections
/// hold no buffer at all, which is what keeps an idle socket's user-space cost to its `Conn` slot.
///
/// Each buffer is either the kernel's (in the ring) or lent out: handed to us by a receive completion
/// (`take`) and readable (`get`) until it is given back (`give_back`). The `lent` bitset enforces this:
/// a buffer the kernel may be writing is never read, and no buffer is in the ring twice.
pub struct BufRing {
    pub(super) ring: *mut types::BufRingEntry,
    pub(super) entries: u16,
    buf_size: usize,
    /// The buffers: mapped and faulted in at start, so this fixed cost is resident from the first
    /// moment instead of growing into RSS as the ring cycles (docs/memory.md).
    memory: *mut u8,
    /// Our tail (buffers handed back), published to the kernel by `publish`.
    pub(super) tail: u16,
    /// Bit `bid`: buffer `bid` is lent out (taken from a completion, not given back yet).
    lent: Box<[u64]>,
    /// Owner of both mappings; a `Ring` the buffers are registered with holds a clone, so they stay
    /// mapped until no receive can write into them, whichever of the two is dropped first.
    pub(super) maps: Rc<Mappings>,
}

/// The buffer ring's two mappings (entries, buffers), unmapped when the last owner goes.
pub(super) type Mappings = [Mapping; 2];

pub(super) struct Mapping {
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
