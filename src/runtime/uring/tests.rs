//! The ring against the real kernel: teardown with operations armed, accept peer addresses, and the
//! buffer-id checks of `BufRing`.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::*;

const ACCEPT_0: u64 = 10;
const ACCEPT_1: u64 = 11;
const RECV: u64 = 20;
const WAKE: u64 = 30;

/// Submit and reap until the completion of `user_data` arrives (at most 5 s).
fn wait_for(ring: &mut Ring, user_data: u64) -> (i32, u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        ring.submit_and_wait(Duration::from_millis(50)).unwrap();
        ring.reap(&mut out);
        if let Some(&(_, res, flags)) = out.iter().find(|c| c.0 == user_data) {
            return (res, flags);
        }
        out.clear();
    }
    panic!("no completion for user_data {user_data} within 5 s");
}

/// Whether a bug check fired: a panic in debug builds, nothing (it is logged and ignored) in release.
fn caught(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

/// A ring with a connection accepted from `client` (into a direct descriptor) and, still in flight, a
/// multishot receive on it that has delivered one message, a second accept waiting on the listener
/// and a read of an eventfd nobody writes.
struct Armed {
    ring: Ring,
    bufs: BufRing,
    client: TcpStream,
    _listener: TcpListener,
    _wake: OwnedFd,
}

fn armed() -> Armed {
    let mut ring = Ring::new(64, 16, 2).unwrap();
    let mut bufs = BufRing::new(8, 4096).unwrap();
    ring.register_buf_ring(&bufs).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ring.accept(listener.as_raw_fd(), 0, ACCEPT_0);
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (slot, _) = wait_for(&mut ring, ACCEPT_0);
    assert!(slot >= 0, "accept failed: {slot}");

    ring.recv_multishot(slot as u32, RECV);
    client.write_all(b"hello").unwrap();
    let (n, flags) = wait_for(&mut ring, RECV);
    assert_eq!(n, 5);
    assert!(more(flags), "the multishot receive stays armed");
    let bid = bufs.take(flags).expect("a provided buffer");
    assert_eq!(bufs.get(bid, n as usize), b"hello");
    bufs.give_back(bid);
    bufs.publish();

    ring.accept(listener.as_raw_fd(), 1, ACCEPT_1);
    let wake = eventfd().unwrap();
    ring.read_eventfd(wake.as_raw_fd(), WAKE);
    ring.submit_and_wait(Duration::ZERO).unwrap();
    let mut out = Vec::new();
    ring.reap(&mut out);
    assert!(out.is_empty(), "nothing else completes: {out:?}");
    assert_eq!(ring.in_flight(), 3);
    Armed {
        ring,
        bufs,
        client,
        _listener: listener,
        _wake: wake,
    }
}

#[test]
fn teardown_cancels_and_reaps_an_armed_receive_a_pending_accept_and_an_eventfd_read() {
    let mut a = armed();
    let started = Instant::now();
    assert!(a.ring.teardown(Duration::from_secs(2)));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.ring.in_flight(), 0);
    assert_eq!(
        a.ring.accept_peer(1),
        None,
        "the cancelled accept wrote no peer"
    );
    // A second teardown has nothing to do.
    assert!(a.ring.teardown(Duration::ZERO));

    // Dropping the ring closes the accepted connection: the client reads end of stream.
    drop(a.ring);
    drop(a.bufs);
    a.client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    let mut read = a.client.read(&mut byte);
    while matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::Interrupted) {
        read = a.client.read(&mut byte);
    }
    match read {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected end of stream, got {other:?}"),
    }
}

#[test]
fn dropping_a_ring_with_operations_armed_returns_promptly_in_either_drop_order() {
    let a = armed();
    // The buffers first: the ring keeps their mappings until its receive is reaped.
    drop(a.bufs);
    let started = Instant::now();
    drop(a.ring);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let b = armed();
    let started = Instant::now();
    drop(b.ring);
    drop(b.bufs);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn accept_peer_reads_back_the_address_the_client_connected_from() {
    let mut ring = Ring::new(16, 8, 1).unwrap();
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let Ok(listener) = TcpListener::bind(addr) else {
            eprintln!("skipping {addr}: cannot bind");
            continue;
        };
        ring.accept(listener.as_raw_fd(), 0, ACCEPT_0);
        ring.submit_and_wait(Duration::ZERO).unwrap();
        assert_eq!(
            ring.accept_peer(0),
            None,
            "no peer while the accept is in flight"
        );
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (slot, _) = wait_for(&mut ring, ACCEPT_0);
        assert!(slot >= 0, "accept failed: {slot}");
        let expected: IpAddr = client.local_addr().unwrap().ip();
        assert_eq!(ring.accept_peer(0), Some(expected));
        ring.close(slot as u32, 99);
        wait_for(&mut ring, 99);
    }
    assert_eq!(
        ring.accept_peer(5),
        None,
        "an accept number past the pool has no peer"
    );
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn arming_an_accept_that_is_in_flight_is_caught_and_not_submitted() {
    let mut ring = Ring::new(16, 8, 1).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ring.accept(listener.as_raw_fd(), 0, ACCEPT_0);
    let twice = caught(|| ring.accept(listener.as_raw_fd(), 0, ACCEPT_1));
    assert_eq!(twice, cfg!(debug_assertions));
    assert_eq!(ring.in_flight(), 1);
    assert!(ring.teardown(Duration::from_secs(2)));
}

#[test]
#[should_panic(expected = "reserved top byte")]
fn a_user_data_in_the_rings_reserved_range_is_refused() {
    let mut ring = Ring::new(16, 8, 1).unwrap();
    ring.close(0, RING_TAG << 56);
}

/// Completion flags carrying provided buffer `bid` (IORING_CQE_F_BUFFER and the id above bit 16).
fn with_buffer(bid: u16) -> u32 {
    1 | u32::from(bid) << 16
}

#[test]
fn give_back_of_a_buffer_not_lent_out_is_caught_and_ignored() {
    // Not registered with a ring: the ids are lent by synthetic completion flags.
    let mut bufs = BufRing::new(8, 64).unwrap();
    let tail = bufs.tail;
    assert!(
        caught(|| bufs.give_back(3)) == cfg!(debug_assertions),
        "never lent"
    );
    assert!(
        caught(|| bufs.give_back(8)) == cfg!(debug_assertions),
        "out of range"
    );
    assert!(
        caught(|| bufs.give_back(u16::MAX)) == cfg!(debug_assertions),
        "out of range"
    );
    assert_eq!(bufs.tail, tail, "nothing was put in the ring");

    assert_eq!(bufs.take(with_buffer(5)), Some(5));
    assert_eq!(
        bufs.get(5, 100).len(),
        64,
        "a lent buffer reads up to its size"
    );
    bufs.give_back(5);
    assert_eq!(bufs.tail, tail.wrapping_add(1));
    assert!(
        caught(|| bufs.give_back(5)) == cfg!(debug_assertions),
        "given back twice"
    );
    assert_eq!(bufs.tail, tail.wrapping_add(1));
}

#[test]
fn reading_a_buffer_not_lent_out_is_caught_and_yields_nothing() {
    let mut bufs = BufRing::new(8, 64).unwrap();
    let mut len = None;
    let fired = caught(|| len = Some(bufs.get(2, 10).len()));
    assert_eq!(fired, cfg!(debug_assertions));
    if !fired {
        assert_eq!(len, Some(0));
    }
    assert_eq!(
        bufs.take(0),
        None,
        "a completion without a buffer lends none"
    );
    let fired = caught(|| assert_eq!(bufs.take(with_buffer(8)), None));
    assert_eq!(fired, cfg!(debug_assertions), "an id past the ring");
}
