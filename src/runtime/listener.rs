//! The listening socket of one worker: every worker binds its own with `SO_REUSEPORT`, so the kernel
//! spreads new connections across workers (and across processes) with no shared accept queue. Before
//! binding, `serve` checks that no other server holds the port ([`ensure_free`]) unless `--join`.
//!
//! On SIGTERM a worker stops listening at once (the driver's `stop_listening`): its listener leaves
//! the port's `SO_REUSEPORT` group, so a replacement started with `--join` takes every new connection
//! while the old process drains its clients (docs/runtime.md "Graceful shutdown").

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog asked for (the kernel caps it at `net.core.somaxconn`; see kernel-tuning/).
const BACKLOG: i32 = 65_535;

/// How long a held port is retried before `serve` gives up: a server that has just exited may still hold
/// its listener for a moment (io_uring releases a ring's files after the process is gone, asynchronously).
const HELD_PORT_WAIT: Duration = Duration::from_secs(3);

/// Refuse a port another server already listens on: SO_REUSEPORT would let us join it silently (the
/// kernel would then hand us a share of its clients, or, for the listener of a server that has just
/// exited, connections nobody accepts). Probed by binding without SO_REUSEPORT, which fails while any
/// socket listens on the address (ours are bound only after this check); retried for
/// [`HELD_PORT_WAIT`].
pub fn ensure_free(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + HELD_PORT_WAIT;
    loop {
        match probe(addr) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "cannot listen on {addr}: port {} is already in use: another server holds it. Stop \
                     it, choose another --listen, or pass --join (RINGCAST_JOIN=true) to share the port \
                     with it (SO_REUSEPORT: the kernel then spreads new connections over both)",
                    addr.port()
                ));
            }
            Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
        }
    }
}

/// Bind `addr` without SO_REUSEPORT (and close it): `AddrInUse` while another socket listens there.
fn probe(addr: SocketAddr) -> io::Result<()> {
    tcp_socket(addr)?.bind(&addr.into())
}

/// A TCP socket for `addr` with SO_REUSEADDR (connections in TIME_WAIT from an earlier server do not hold
/// the port) and, for IPv6, dual-stack (`[::]` also takes IPv4 clients, mapped, like most servers).
fn tcp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// `send_buffer`: SO_SNDBUF inherited by accepted sockets (0 leaves the kernel's autotuning).
pub fn bind(addr: SocketAddr, send_buffer: u32) -> io::Result<Socket> {
    let socket = tcp_socket(addr)?;
    socket.set_reuse_port(true)?;
    // Inherited by accepted sockets: ticks go out as soon as they are written, never held by Nagle.
    socket.set_tcp_nodelay(true)?;
    if send_buffer > 0 {
        socket.set_send_buffer_size(send_buffer as usize)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// Whether the kernel hands the connections queued on a closed `SO_REUSEPORT` listener to another
/// listener of the port (`net.ipv4.tcp_migrate_req = 1`, Linux 5.14; kernel-tuning/ sets it) instead of
/// resetting them.
pub fn migrates_requests() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}
