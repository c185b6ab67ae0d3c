//! Sockets: connect, the upgrade (over TLS with `--tls`), writes, reads, closes.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::frames::Closed;
use super::{Client, Conn, Fail, State};
use crate::common::*;
use crate::{tls, ws};

impl Client {
    pub(super) fn start_connects(&mut self, now: u64) {
        while self.inflight < self.cfg.concurrency {
            let Some(idx) = self.queue.pop_front() else {
                break;
            };
            self.connect(idx, now);
        }
    }

    fn connect(&mut self, idx: usize, now: u64) {
        let addr_idx = (self.conns[idx].global - self.cfg.offset) / self.cfg.per_addr;
        let src = Ipv4Addr::from(self.cfg.src_base + addr_idx as u32);
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            self.connect_failed(idx, Fail::Connect);
            return;
        }
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const _,
                4,
            );
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const _,
                4,
            );
            // Kernel receive timestamps on every read (see `Client::arrival_rt`).
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &one as *const _ as *const _,
                4,
            );
        }
        let sa = sockaddr(SocketAddrV4::new(src, 0));
        let rc = unsafe {
            libc::bind(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if rc != 0 {
            unsafe { libc::close(fd) };
            self.connect_failed(idx, Fail::Connect);
            return;
        }
        let da = sockaddr(self.cfg.target);
        let rc = unsafe {
            libc::connect(
                fd,
                &da as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            unsafe { libc::close(fd) };
            self.connect_failed(idx, Fail::Connect);
            return;
        }
        if self.initial_first == 0 {
            self.initial_first = realtime_ns();
        }
        let c = &mut self.conns[idx];
        c.generation = c.generation.wrapping_add(1);
        c.fd = fd;
        c.state = State::Connecting;
        c.t0 = now;
        c.acked = false;
        c.rbuf.clear();
        c.wbuf.clear();
        c.frag.clear();
        c.tls = None;
        c.out_armed = false;
        c.close_code = 1006;
        c.last.iter_mut().for_each(|x| *x = 0);
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLOUT | libc::EPOLLIN) as u32,
            u64: (c.generation as u64) << 32 | idx as u64,
        };
        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        self.inflight += 1;
    }

    pub(super) fn connect_failed(&mut self, idx: usize, fail: Fail) {
        match fail {
            Fail::Connect => self.st.c.connect_errors += 1,
            Fail::Tls => self.st.c.tls_errors += 1,
            Fail::Upgrade => self.st.c.handshake_errors += 1,
        }
        let c = &mut self.conns[idx];
        if c.initial {
            c.initial = false;
            self.initial_pending -= 1;
        }
        c.state = State::Closed;
        let refused_503 = c.close_code == 503;
        if c.churner && self.churn_rate > 0.0 {
            // keep churning: try again later
            self.queue.push_back(idx);
        }
        self.storm_refused(idx, refused_503, matches!(fail, Fail::Connect));
        self.storm_retry(idx, 1006);
    }

    /// Remembers the first failure (with its cause) for the coordinator's warnings.
    pub(super) fn note_error(&mut self, e: String) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    pub(super) fn close_fd(&mut self, idx: usize, abort: bool) {
        let c = &mut self.conns[idx];
        if let Some(mut t) = c.tls.take()
            && !abort
            && c.fd >= 0
            && !t.is_handshaking()
        {
            // A polite close says so in TLS too (best effort: one write, no waiting).
            t.send_close_notify();
            let _ = tls::flush(&mut t, c.fd);
        }
        c.out_armed = false;
        if c.fd >= 0 {
            if abort {
                let l = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                unsafe {
                    libc::setsockopt(
                        c.fd,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &l as *const _ as *const _,
                        std::mem::size_of::<libc::linger>() as u32,
                    )
                };
            }
            unsafe { libc::close(c.fd) };
            c.fd = -1;
        }
        match c.state {
            State::Connecting | State::TlsHandshaking | State::Handshaking => self.inflight -= 1,
            State::Open | State::Closing => self.open -= 1,
            _ => {}
        }
        c.state = State::Closed;
        c.generation = c.generation.wrapping_add(1);
    }

    fn set_events(&self, idx: usize, events: u32) {
        let c = &self.conns[idx];
        let mut ev = libc::epoll_event {
            events,
            u64: (c.generation as u64) << 32 | idx as u64,
        };
        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_MOD, c.fd, &mut ev) };
    }

    pub(super) fn on_event(&mut self, idx: usize, flags: u32, rb: &mut [u8]) {
        let state = self.conns[idx].state;
        match state {
            State::Connecting => {
                // Writable without an error or hangup: connected (SO_ERROR only asked when it failed:
                // one system call less per connect).
                let failed = flags & ((libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0;
                let mut err: libc::c_int = 0;
                if failed {
                    let mut len = 4u32;
                    unsafe {
                        libc::getsockopt(
                            self.conns[idx].fd,
                            libc::SOL_SOCKET,
                            libc::SO_ERROR,
                            &mut err as *mut _ as *mut _,
                            &mut len,
                        )
                    };
                }
                if err != 0 || failed {
                    self.close_fd(idx, true);
                    let e =
                        std::io::Error::from_raw_os_error(if err != 0 { err } else { libc::EIO });
                    self.note_error(format!("connect to {}: {e}", self.cfg.target));
                    self.connect_failed(idx, Fail::Connect);
                    return;
                }
                if flags & (libc::EPOLLOUT as u32) == 0 {
                    return;
                }
                if self.tls.is_some() {
                    self.start_tls(idx);
                } else {
                    self.set_events(idx, libc::EPOLLIN as u32);
                    self.start_upgrade(idx);
                }
            }
            State::TlsHandshaking | State::Handshaking | State::Open | State::Closing => {
                if flags & (libc::EPOLLOUT as u32) != 0 {
                    self.flush(idx);
                }
                if self.conns[idx].slow {
                    if flags & ((libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0 {
                        self.st.c.server_closed += 1;
                        self.close_fd(idx, true);
                    }
                    return;
                }
                if flags & ((libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0 {
                    self.read_conn(idx, rb);
                }
            }
            State::Idle | State::Closed => {}
        }
    }

    /// --tls, connected: the session starts; its ClientHello goes out now (or on EPOLLOUT). The
    /// upgrade waits until the handshake is done (`tls_input`).
    fn start_tls(&mut self, idx: usize) {
        let own = &mut self.conns[idx].tls_config;
        let session = self.tls.as_ref().map(|t| t.session(own));
        match session {
            Some(Ok(s)) => {
                let c = &mut self.conns[idx];
                c.tls = Some(s);
                c.state = State::TlsHandshaking;
                c.out_armed = true; // still registered for EPOLLOUT since connect()
                if !self.flush_tls(idx) {
                    self.close_fd(idx, true);
                    self.note_error("TLS: writing the ClientHello failed".into());
                    self.connect_failed(idx, Fail::Tls);
                }
            }
            Some(Err(e)) => {
                self.close_fd(idx, true);
                self.note_error(format!("TLS: {e}"));
                self.connect_failed(idx, Fail::Tls);
            }
            None => unreachable!("start_tls without --tls"),
        }
    }

    /// Writes the upgrade request (plain: at once; TLS: once the handshake is done).
    fn start_upgrade(&mut self, idx: usize) {
        let key = ws::make_key((self.rng.next() as u128) << 64 | self.rng.next() as u128);
        self.conns[idx].key = key;
        let req = ws::upgrade_request(&self.cfg.host, &self.cfg.path, &key);
        self.conns[idx].state = State::Handshaking;
        if !self.send(idx, &req) {
            self.close_fd(idx, true);
            self.note_error("writing the upgrade request failed".into());
            self.connect_failed(idx, Fail::Upgrade);
        }
    }

    /// Writes now, or keeps the rest and waits for EPOLLOUT. False on a hard error.
    pub(super) fn send(&mut self, idx: usize, data: &[u8]) -> bool {
        let c = &mut self.conns[idx];
        if let Some(t) = c.tls.as_mut() {
            tls::send(t, data);
            return self.flush_tls(idx);
        }
        if !c.wbuf.is_empty() {
            c.wbuf.extend_from_slice(data);
            return true;
        }
        let n = unsafe { libc::write(c.fd, data.as_ptr() as *const _, data.len()) };
        let n = if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                0
            } else {
                return false;
            }
        } else {
            n as usize
        };
        if n < data.len() {
            c.wbuf.extend_from_slice(&data[n..]);
            let ev = if c.slow { 0 } else { libc::EPOLLIN as u32 } | libc::EPOLLOUT as u32;
            self.set_events(idx, ev);
        }
        true
    }

    /// --tls: writes what rustls has queued; arms EPOLLOUT while some is left, disarms it when done.
    /// False on a hard socket error.
    fn flush_tls(&mut self, idx: usize) -> bool {
        let c = &mut self.conns[idx];
        let Some(t) = c.tls.as_mut() else { return true };
        let done = match tls::flush(t, c.fd) {
            Ok(done) => done,
            Err(_) => return false,
        };
        if done == c.out_armed {
            c.out_armed = !done;
            let base = if c.slow { 0 } else { libc::EPOLLIN as u32 };
            let ev = if done {
                base
            } else {
                base | libc::EPOLLOUT as u32
            };
            self.set_events(idx, ev);
        }
        true
    }

    fn flush(&mut self, idx: usize) {
        if self.conns[idx].tls.is_some() {
            // a socket error shows up on the next read
            let _ = self.flush_tls(idx);
            return;
        }
        let c = &mut self.conns[idx];
        if c.wbuf.is_empty() {
            return;
        }
        let n = unsafe { libc::write(c.fd, c.wbuf.as_ptr() as *const _, c.wbuf.len()) };
        if n > 0 {
            c.wbuf.drain(..n as usize);
        }
        if c.wbuf.is_empty() {
            let ev = if c.slow { 0 } else { libc::EPOLLIN as u32 };
            self.set_events(idx, ev);
        }
    }

    pub(super) fn read_conn(&mut self, idx: usize, rb: &mut [u8]) {
        // A few reads at most, then back to epoll (level-triggered) so one busy connection cannot starve
        // the others or the command pipe. With --tls the ciphertext read here goes through rustls
        // (read_tls from the buffer, so one socket read per turn as without TLS), the plaintext on.
        for _ in 0..4 {
            let fd = self.conns[idx].fd;
            if fd < 0 {
                return;
            }
            let (n, arrival_rt) = read_stamped(fd, rb);
            if n > 0 {
                let n = n as usize;
                self.st.c.reads += 1;
                self.st.c.bytes += n as u64;
                let now_rt = realtime_ns();
                self.arrival_rt = arrival_rt;
                if let Some(t) = &mut self.timeline {
                    t.read(now_rt);
                }
                let more = if self.conns[idx].tls.is_some() {
                    self.tls_input(idx, &rb[..n], now_rt)
                } else {
                    self.deliver(idx, &rb[..n], now_rt)
                };
                if !more || n < rb.len() {
                    return;
                }
            } else if n == 0 {
                self.after_close(idx, false);
                return;
            } else {
                let e = std::io::Error::last_os_error().raw_os_error();
                if e == Some(libc::EAGAIN) || e == Some(libc::EINTR) {
                    return;
                }
                self.after_close(idx, true);
                return;
            }
        }
    }

    /// --tls: ciphertext in → records out (handshake, alerts), the upgrade once the handshake is done,
    /// plaintext to `deliver`. False when the connection ended.
    fn tls_input(&mut self, idx: usize, data: &[u8], now_rt: u64) -> bool {
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let t = self.conns[idx].tls.as_mut().expect("TLS session");
        let res = tls::receive(t, data, &mut plain);
        let handshake_done = !t.is_handshaking();
        let more = match res {
            Err(e) => {
                // rustls queued an alert: tell the server why, then drop the connection
                let _ = self.flush_tls(idx);
                self.note_error(format!("TLS: {e}"));
                if self.conns[idx].state == State::TlsHandshaking {
                    self.close_fd(idx, true);
                    self.connect_failed(idx, Fail::Tls);
                } else {
                    self.st.c.tls_errors += 1;
                    self.after_close(idx, true);
                }
                false
            }
            Ok(received) => {
                if !self.flush_tls(idx) {
                    self.after_close(idx, true);
                    false
                } else {
                    if self.conns[idx].state == State::TlsHandshaking && handshake_done {
                        let t = self.conns[idx].tls.as_ref().unwrap();
                        if t.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                            self.st.c.tls_resumed += 1;
                        }
                        if self.tls_info.is_null() {
                            self.tls_info = tls::describe(t);
                        }
                        self.start_upgrade(idx);
                    }
                    let mut more = self.conns[idx].fd >= 0;
                    if more && !plain.is_empty() {
                        more = self.deliver(idx, &plain, now_rt);
                    }
                    if more && matches!(received, tls::Received::Closed) {
                        // close_notify: the server is done with us
                        self.after_close(idx, false);
                        more = false;
                    }
                    more
                }
            }
        };
        self.plain = plain;
        more
    }

    /// Bytes of the WebSocket stream (after TLS, if any) in: frames parsed, a partial one kept.
    /// False when the connection ended.
    fn deliver(&mut self, idx: usize, data: &[u8], now_rt: u64) -> bool {
        let mut buf = std::mem::take(&mut self.conns[idx].rbuf);
        let res = if buf.is_empty() {
            let r = self.consume(idx, data, now_rt);
            if let Ok(used) = r {
                buf.extend_from_slice(&data[used..]);
            }
            r
        } else {
            buf.extend_from_slice(data);
            let r = self.consume(idx, &buf, now_rt);
            if let Ok(used) = r {
                buf.drain(..used);
            }
            r
        };
        if self.conns[idx].fd < 0 || self.conns[idx].generation_changed_marker() {
            return false;
        }
        self.conns[idx].rbuf = buf;
        match res {
            Ok(_) => true,
            Err(Closed::Protocol(e)) => {
                self.st.c.protocol_errors += 1;
                self.note_error(format!("protocol error: {e}"));
                self.after_close(idx, true);
                false
            }
            Err(Closed::Handshake(e)) => {
                if e.contains("HTTP/1.1 503") {
                    // draining, or over the handshake rate: counted by the storm (connect_failed)
                    self.conns[idx].close_code = 503;
                }
                self.close_fd(idx, true);
                self.note_error(format!("upgrade failed: {e}"));
                self.connect_failed(idx, Fail::Upgrade);
                false
            }
            Err(Closed::CloseFrame) => {
                // Server sent Close (we answered): a churner that asked for it, or the server
                // dropping us.
                self.after_close(idx, false);
                false
            }
        }
    }

    /// The connection ended (EOF, Close frame, error).
    pub(super) fn after_close(&mut self, idx: usize, abort: bool) {
        let was = self.conns[idx].state;
        self.close_fd(idx, abort);
        match was {
            State::TlsHandshaking => {
                self.note_error("the server closed the connection during the TLS handshake".into());
                return self.connect_failed(idx, Fail::Tls);
            }
            State::Handshaking => {
                self.note_error(
                    "the server closed the connection before answering the upgrade".into(),
                );
                return self.connect_failed(idx, Fail::Upgrade);
            }
            _ => {}
        }
        let c = &self.conns[idx];
        if was == State::Closing {
            // we asked for it (churn)
        } else if c.churner {
            self.st.c.server_closed_churners += 1;
        } else {
            self.st.c.server_closed += 1;
        }
        if c.churner && self.churn_rate > 0.0 {
            self.queue.push_back(idx);
        }
        if was != State::Closing {
            let code = self.conns[idx].close_code;
            self.storm_retry(idx, code);
        }
    }
}

impl Conn {
    #[inline]
    fn generation_changed_marker(&self) -> bool {
        self.state == State::Closed
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// `read` that also returns the kernel's receive timestamp of the data (CLOCK_REALTIME ns; 0 when the
/// socket gave none). For TCP it is the time the newest segment in the read reached the socket.
fn read_stamped(fd: i32, buf: &mut [u8]) -> (isize, u64) {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut _,
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is an empty message, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut _;
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive and writable for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    let mut stamp = 0;
    if n > 0 {
        // SAFETY (this loop): CMSG_* walk the control buffer the kernel filled, within msg_controllen;
        // a SCM_TIMESTAMPNS payload is a timespec, read unaligned.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            let h = unsafe { &*cmsg };
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = unsafe {
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec)
                };
                stamp = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            }
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
    }
    (n, stamp)
}
