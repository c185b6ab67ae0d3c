//! How other threads steer a worker: the wake-up (an eventfd its ring reads), the stop and graceful
//! shutdown flags, and the worker's counters (read by `/metrics`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fanout::Notify;
use crate::runtime::stats::WorkerStats;
use crate::runtime::uring;

/// State shared between a worker and the threads that steer it.
#[derive(Debug)]
pub struct Control {
    stop: AtomicBool,
    shutdown: AtomicBool,
    /// Set while a wake-up is pending, so a burst of events costs one eventfd write.
    notified: AtomicBool,
    pub wake: OwnedFd,
    pub stats: Arc<WorkerStats>,
}

impl Control {
    pub fn new() -> std::io::Result<Arc<Control>> {
        Ok(Arc::new(Control {
            stop: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            wake: uring::eventfd()?,
            stats: Arc::new(WorkerStats::default()),
        }))
    }

    /// Begin a graceful shutdown (SIGTERM): the worker closes its clients over the shutdown window, then
    /// stops.
    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        uring::eventfd_signal(self.wake.as_raw_fd());
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Called by the worker when it wakes, before taking its queue.
    pub fn woken(&self) {
        self.notified.store(false, Ordering::Release);
    }

    /// Ask the worker to stop; it returns from `run` at its next iteration.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        uring::eventfd_signal(self.wake.as_raw_fd());
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

impl Notify for Control {
    /// Wake the worker (new feed events are queued), unless a wake-up is already pending.
    fn notify(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            uring::eventfd_signal(self.wake.as_raw_fd());
        }
    }
}
