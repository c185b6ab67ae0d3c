//! The PROXY protocol header (HAProxy's `send-proxy` / `send-proxy-v2`), sans-IO: the first bytes a
//! load balancer sends on a connection, before the HTTP request (or the TLS ClientHello), naming the
//! client it relays. Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.
//!
//! [`parse`] takes the bytes received so far and says whether they hold a complete header (the client's
//! address and how many bytes the header took), need more, or are not a valid header. Version 1 is a
//! text line (`PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n`, at most 107 bytes); version 2 a binary
//! header (a 12-byte signature, then version/command, family, a length and the addresses, then TLVs,
//! which are skipped). A `LOCAL` (v2) or `UNKNOWN` (v1) header is valid and names no client: the
//! connection is the proxy's own (a health check), and keeps the proxy's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included (spec §2.1).
pub const V1_MAX: usize = 107;
/// The longest version 2 header we accept: 16 fixed bytes plus the largest length field.
pub const V2_MAX: usize = 16 + u16::MAX as usize;

/// What the bytes received so far hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete header of `consumed` bytes; `client` is the relayed client's address (`None` for a
    /// `LOCAL`/`UNKNOWN` header, or an address family other than TCP over IPv4/IPv6).
    Complete {
        client: Option<SocketAddr>,
        consumed: usize,
    },
    /// A valid prefix of a header: wait for more bytes.
    NeedMore,
    /// Not a PROXY header (or a malformed one).
    Invalid(Invalid),
}

/// Why bytes are not a valid PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Neither the v1 `PROXY ` prefix nor the v2 signature.
    NoSignature,
    /// A v1 line longer than 107 bytes, or not ending in CRLF.
    V1LineTooLong,
    /// A v1 line whose fields do not parse (protocol, addresses, ports).
    V1Malformed,
    /// A v2 header whose version is not 2 or whose command is neither LOCAL nor PROXY.
    V2BadVersion,
    /// A v2 address block shorter than its family needs.
    V2ShortAddress,
}

impl Invalid {
    /// A short description for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::NoSignature => "no PROXY protocol header",
            Invalid::V1LineTooLong => "PROXY v1 line too long or not CRLF-terminated",
            Invalid::V1Malformed => "malformed PROXY v1 line",
            Invalid::V2BadVersion => "PROXY v2 header with a bad version or command",
            Invalid::V2ShortAddress => "PROXY v2 address block too short",
        }
    }
}

/// Parse the start of a connection's bytes (see the module doc). Never reads past the header.
pub fn parse(data: &[u8]) -> Parsed {
    const V1_PREFIX: &[u8] = b"PROXY ";
    if data.is_empty() {
        return Parsed::NeedMore;
    }
    let n = data.len().min(V2_SIGNATURE.len());
    if data[..n] == V2_SIGNATURE[..n] {
        if data.len() < V2_SIGNATURE.len() {
            return Parsed::NeedMore;
        }
        return parse_v2(data);
    }
    let n = data.len().min(V1_PREFIX.len());
    if data[..n] == V1_PREFIX[..n] {
        if data.len() < V1_PREFIX.len() {
            return Parsed::NeedMore;
        }
        return parse_v1(data);
    }
    Parsed::Invalid(Invalid::NoSignature)
}

fn parse_v1(data: &[u8]) -> Parsed {
    let window = &data[..data.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if data.len() >= V1_MAX {
            return Parsed::Invalid(Invalid::V1LineTooLong);
        }
        // No newline may come before the CR.
        if window.contains(&b'\n') {
            return Parsed::Invalid(Invalid::V1Malformed);
        }
        return Parsed::NeedMore;
    };
    match window.get(cr + 1) {
        None if data.len() < V1_MAX => return Parsed::NeedMore,
        Some(b'\n') => {}
        _ => return Parsed::Invalid(Invalid::V1LineTooLong),
    }
    // No newline may come before the CR (also where the rest of the line is ignored, as after UNKNOWN).
    if data[..cr].contains(&b'\n') {
        return Parsed::Invalid(Invalid::V1Malformed);
    }
    let consumed = cr + 2;
    let Ok(line) = std::str::from_utf8(&data[..cr]) else {
        return Parsed::Invalid(Invalid::V1Malformed);
    };
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    match fields.next() {
        // UNKNOWN: the rest of the line is ignored (spec §2.1).
        Some("UNKNOWN") => Parsed::Complete {
            client: None,
            consumed,
        },
        Some(family @ ("TCP4" | "TCP6")) => {
            let parsed = (|| {
                let src: IpAddr = fields.next()?.parse().ok()?;
                let dst: IpAddr = fields.next()?.parse().ok()?;
                let src_port = port(fields.next()?)?;
                let _dst_port = port(fields.next()?)?;
                if fields.next().is_some() {
                    return None;
                }
                let v4 = family == "TCP4";
                (src.is_ipv4() == v4 && dst.is_ipv4() == v4).then_some((src, src_port))
            })();
            match parsed {
                Some((ip, port)) => Parsed::Complete {
                    client: Some(SocketAddr::new(ip, port)),
                    consumed,
                },
                None => Parsed::Invalid(Invalid::V1Malformed),
            }
        }
        _ => Parsed::Invalid(Invalid::V1Malformed),
    }
}

/// A v1 port: decimal, no sign, no leading zero (spec: "0" is allowed alone).
fn port(field: &str) -> Option<u16> {
    if field.is_empty() || (field.len() > 1 && field.starts_with('0')) {
        return None;
    }
    if !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

fn parse_v2(data: &[u8]) -> Parsed {
    if data.len() < 16 {
        // The version/command byte can already be checked.
        if let Some(&vc) = data.get(12)
            && !valid_v2_version(vc)
        {
            return Parsed::Invalid(Invalid::V2BadVersion);
        }
        return Parsed::NeedMore;
    }
    let version_command = data[12];
    if !valid_v2_version(version_command) {
        return Parsed::Invalid(Invalid::V2BadVersion);
    }
    let family = data[13];
    let len = usize::from(u16::from_be_bytes([data[14], data[15]]));
    let consumed = 16 + len;
    if data.len() < consumed {
        return Parsed::NeedMore;
    }
    let block = &data[16..consumed];
    if version_command & 0x0F == 0 {
        // LOCAL: the proxy's own connection; the address block (if any) is ignored.
        return Parsed::Complete {
            client: None,
            consumed,
        };
    }
    // PROXY: the address family (high nibble) and transport (low nibble); TLVs after the addresses
    // are skipped (they sit inside `len`).
    let client = match family {
        // TCP or UDP over IPv4: src(4) dst(4) src_port(2) dst_port(2).
        0x11 | 0x12 => {
            if block.len() < 12 {
                return Parsed::Invalid(Invalid::V2ShortAddress);
            }
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // Over IPv6: src(16) dst(16) src_port(2) dst_port(2).
        0x21 | 0x22 => {
            if block.len() < 36 {
                return Parsed::Invalid(Invalid::V2ShortAddress);
            }
            let mut octets = [0; 16];
            octets.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // UNSPEC, or a UNIX socket: no IP address to use (the receiver must accept it, spec §2.2).
        _ => None,
    };
    Parsed::Complete { client, consumed }
}

/// Version 2 in the high nibble; command LOCAL (0) or PROXY (1) in the low one.
fn valid_v2_version(vc: u8) -> bool {
    vc >> 4 == 2 && vc & 0x0F <= 1
}

/// A v2 header for `client` → `server` (PROXY command, TCP) followed by `tlvs`: for tests and tools.
pub fn encode_v2(client: SocketAddr, server: SocketAddr, tlvs: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            out.push(0x11);
            out.extend_from_slice(&(12 + tlvs.len() as u16).to_be_bytes());
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
        (c, s) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            out.push(0x21);
            out.extend_from_slice(&(36 + tlvs.len() as u16).to_be_bytes());
            out.extend_from_slice(&v6(c).octets());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
    }
    out.extend_from_slice(tlvs);
}

#[cfg(test)]
mod tests;
