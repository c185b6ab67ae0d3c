//! The listening socket of one worker: every worker binds its own with `SO_REUSEPORT`, so the kernel
//! spreads new connections across workers (and across processes) with no shared accept queue.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog asked for (the kernel caps it at `net.core.somaxconn`; see kernel-tuning/).
const BACKLOG: i32 = 65_535;

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
