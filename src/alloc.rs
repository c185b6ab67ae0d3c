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
