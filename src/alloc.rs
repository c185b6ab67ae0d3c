//! The allocator: mimalloc (set as the global allocator in `main.rs`, so tests may install their own),
//! told to return freed pages to the OS at once.
//!
//! A connect wave allocates an outbox per connection (101, ack, snapshot) and frees it a moment later; by
//! default mimalloc keeps those pages resident for a while, which showed as ~220 B of RSS per idle
//! connection at 10k connections (perf/RESULTS.md). Purging at once costs a few madvise calls per burst.
//!
//! Transparent huge pages are turned off for the process. mimalloc asks for them (`MADV_HUGEPAGE`) on
//! its arenas, and khugepaged then fills every 2 MiB range that holds a few live connections' bytes
//! with a whole huge page: idle RSS grew by 2 MB every 10 s scan while nothing happened, from ~450 B to
//! ~1,100 B per connection at 10k (docs/memory.md). Set `MIMALLOC_ALLOW_THP=1` to keep them.

/// `mi_option_purge_delay` in mimalloc's option enum (between `eager_commit_delay` = 14 and
/// `use_numa_nodes` = 16, as libmimalloc-sys lists them).
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
}

/// Call once at start-up, before the workers run.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an option value; mimalloc is the linked global allocator
        // (libmimalloc-sys), which exports the symbol whatever its cargo features.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and sets a flag on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "PR_SET_THP_DISABLE failed");
        }
    }
}

/// The unit tests' allocator: mimalloc, counting per thread the bytes its blocks hold (mimalloc's usable
/// size: the size class, not the size asked for), so a test can weigh what a structure keeps on the heap
/// (`runtime/core/tests/memory.rs`). Only the library's own test binary installs it.
#[cfg(test)]
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
    }

    unsafe extern "C" {
        fn mi_usable_size(p: *const u8) -> usize;
    }

    pub struct Counting;

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Bytes held by the blocks this thread allocated, less those it freed, since it started.
    pub fn held() -> isize {
        HELD.with(Cell::get)
    }

    fn count(p: *const u8, sign: isize) {
        if !p.is_null() {
            // SAFETY: `p` is a live block from mimalloc (allocated and not yet freed).
            let size = unsafe { mi_usable_size(p) } as isize;
            // A thread being torn down has no counter any more: nothing to count then.
            let _ = HELD.try_with(|h| h.set(h.get() + sign * size));
        }
    }

    // SAFETY: every call is passed to mimalloc unchanged; the counting only reads the blocks' sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, passed on.
            let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
            count(p, 1);
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, passed on.
            let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
            count(p, 1);
            p
        }

        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            count(p, -1);
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.dealloc(p, layout) }
        }

        unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: `p` is live until the realloc below succeeds.
            let old = unsafe { mi_usable_size(p) } as isize;
            // SAFETY: the caller's contract, passed on.
            let q = unsafe { mimalloc::MiMalloc.realloc(p, layout, new_size) };
            if !q.is_null() {
                let _ = HELD.try_with(|h| h.set(h.get() - old));
                count(q, 1);
            }
            q
        }
    }
}
