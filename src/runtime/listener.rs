//! The listening socket of one worker: every worker binds its own with `SO_REUSEPORT`, so the kernel
//! spreads new connections across workers (and across processes) with no shared accept queue. Before
//! binding, `serve` checks that no other server holds the port ([`ensure_free`]) unless `--join`.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog asked for (the kernel caps it at `net.core.somaxconn`; see kernel-tuning/).
const BACKLOG: i32 = 65_535;

/// Refuse a port another server already listens on: SO_REUSEPORT would let us join it silently (the
/// kernel would then hand us a share of its clients). Probed by binding without SO_REUSEPORT, which
/// fails while any socket listens on the address (ours are bound only after this check).
pub fn ensure_free(addr: SocketAddr) -> Result<(), String> {
    let probe = || -> io::Result<()> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        // Connections in TIME_WAIT from an earlier server do not hold the port.
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.bind(&addr.into())
    };
    match probe() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(format!(
            "port {} is already in use ({addr}): another server holds it. Stop it, choose another \
             --listen, or pass --join (RINGCAST_JOIN=1) to share the port with it (SO_REUSEPORT: the \
             kernel then spreads new connections over both)",
            addr.port()
        )),
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

/// `send_buffer`: SO_SNDBUF inherited by accepted sockets (0 leaves the kernel's autotuning).
pub fn bind(addr: SocketAddr, send_buffer: u32) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]` also takes IPv4 clients (mapped addresses), like most servers.
        socket.set_only_v6(false)?;
    }
    // Inherited by accepted sockets: ticks go out as soon as they are written, never held by Nagle.
    socket.set_tcp_nodelay(true)?;
    if send_buffer > 0 {
        socket.set_send_buffer_size(send_buffer as usize)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}
