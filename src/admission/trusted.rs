//! Which peers may name the client they relay (`--trusted-proxies CIDR,…`): a load balancer's PROXY
//! protocol header (`--proxy-protocol`) and `X-Forwarded-For` are believed only from these addresses;
//! from anyone else the header is refused (PROXY) or ignored (X-Forwarded-For), so a client cannot
//! pick the address its per-address limit and log lines are charged to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block, e.g. `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxies` entry does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCidr(pub String);

impl fmt::Display for BadCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an address block (e.g. 10.0.0.0/8, 127.0.0.1, ::1/128)",
            self.0
        )
    }
}

impl std::error::Error for BadCidr {}

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let ip = ip.to_canonical();
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
        };
        Ok(Cidr {
            net: mask(ip, prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// The trusted proxies: a list of blocks (empty: nobody is trusted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client an `X-Forwarded-For` chain names, when `peer` (the address that sent the request) is
    /// a trusted proxy: the rightmost address that is not itself a trusted proxy (each proxy appends the
    /// address it got the request from, so the entries left of it may be the client's own inventions).
    /// `values`: every `X-Forwarded-For` header, in order. `None` (keep `peer`): the peer is not
    /// trusted, there is no header, or the chain holds an entry that is not an address before an
    /// untrusted one is found.
    pub fn forwarded_client<'a>(
        &self,
        peer: IpAddr,
        values: impl Iterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        if !self.contains(peer) {
            return None;
        }
        let entries: Vec<&str> = values
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut leftmost = None;
        for entry in entries.iter().rev() {
            let ip = parse_forwarded(entry)?.to_canonical();
            if !self.contains(ip) {
                return Some(ip);
            }
            leftmost = Some(ip);
        }
        // Every hop is a trusted proxy: the first one is the closest to the client we know.
        leftmost
    }
}

/// One `X-Forwarded-For` entry: an address, also `[v6]`, `[v6]:port` or `v4:port`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (ip, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

impl FromStr for TrustedProxies {
    type Err = BadCidr;

    /// `10.0.0.0/8,192.168.1.5,::1`: blocks separated by commas (spaces allowed).
    fn from_str(s: &str) -> Result<TrustedProxies, BadCidr> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let t: TrustedProxies = "10.0.0.0/8, 127.0.0.1 ,2001:db8::/32".parse().unwrap();
        assert_eq!(t.0.len(), 3);
        assert_eq!(t.0[0].to_string(), "10.0.0.0/8");
        assert!(t.contains(ip("10.255.0.1")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(t.contains(ip("2001:db8:ffff::1")));
        assert!(!t.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "host", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_untrusted_address() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let xff = |values: &[&str], peer: &str| {
            t.forwarded_client(ip(peer), values.iter().map(|v| v.as_bytes()))
        };
        // The client claims 1.1.1.1; nginx appended the address it saw (203.0.113.9).
        assert_eq!(
            xff(&["1.1.1.1, 203.0.113.9"], "10.0.0.2"),
            Some(ip("203.0.113.9"))
        );
        // Two proxies in a row, over two headers.
        assert_eq!(
            xff(&["203.0.113.9", "10.0.0.5"], "10.0.0.2"),
            Some(ip("203.0.113.9"))
        );
        // From an untrusted peer, the header is ignored.
        assert_eq!(xff(&["203.0.113.9"], "198.51.100.1"), None);
        assert_eq!(xff(&[], "10.0.0.2"), None);
        // Junk right of the first untrusted address: nothing is believed.
        assert_eq!(xff(&["203.0.113.9, junk"], "10.0.0.2"), None);
        // Junk left of it is never read.
        assert_eq!(
            xff(&["junk, 203.0.113.9"], "10.0.0.2"),
            Some(ip("203.0.113.9"))
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            xff(&["10.9.9.9, 10.0.0.5"], "10.0.0.2"),
            Some(ip("10.9.9.9"))
        );
        // Ports and brackets.
        assert_eq!(
            xff(&["203.0.113.9:4711"], "10.0.0.2"),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            xff(&["[2001:db8::5]:4711"], "10.0.0.2"),
            Some(ip("2001:db8::5"))
        );
        assert_eq!(
            xff(&["2001:db8::5"], "::ffff:10.0.0.2"),
            Some(ip("2001:db8::5"))
        );
    }
}
