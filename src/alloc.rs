//! The allocator: mimalloc (set as the global allocator in `main.rs`, so tests may install their own),
//! told to return freed pages to the OS at once.
//!
//! A connect wave allocates an outbox per connection (101, ack, snapshot) and frees it a moment later; by
//! default mimalloc keeps those pages resident for a while, which showed as ~220 B of RSS per idle
//! connection at 10k connections (perf/RESULTS.md). Purging at once costs a few madvise calls per burst.

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
}
