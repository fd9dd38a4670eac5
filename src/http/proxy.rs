//! Who the client is when a proxy stands in front: `X-Forwarded-For`, believed only from a
//! trusted proxy.
//!
//! Anyone can send an `X-Forwarded-For` header, so taking its word would let a password guesser
//! pose as a new address on every try. The edge believes it only when the connection itself
//! comes from an address listed in `trusted_proxies` (nginx's); then the client is the rightmost
//! address in the header that is not itself a trusted proxy (a client may prepend anything, but
//! each trusted proxy appends the address it saw). Otherwise the client is the connection's peer.

use std::net::IpAddr;

use anyhow::Context;
use hyper::header::HeaderMap;

pub use crate::domain::counted;

/// One trusted address, or a range written as `address/prefix-length`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    addr: IpAddr,
    prefix: u8,
}

impl Range {
    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v6), 128),
                },
            }
        };
        let ((want, width), (got, got_width)) = (bits(self.addr), bits(ip));
        if width != got_width {
            return false;
        }
        let shift = u32::from(width - self.prefix.min(width));
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        (want & mask) == (got & mask)
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted {
    ranges: Vec<Range>,
}

impl Trusted {
    /// Parses `"127.0.0.1, 10.0.0.0/8, ::1"`; empty trusts no one.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut ranges = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let addr: IpAddr = addr
                .parse()
                .with_context(|| format!("trusted_proxies: {item:?} is not an address"))?;
            let width = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= width)
                    .with_context(|| format!("trusted_proxies: bad prefix in {item:?}"))?,
                None => width,
            };
            ranges.push(Range { addr, prefix });
        }
        Ok(Self { ranges })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        // the rightmost address no trusted proxy stands for; if every hop is trusted (a client
        // inside a trusted range), the address the nearest proxy saw: never the proxy itself
        // (all clients would share one counter) and never the leftmost, which the client wrote
        forwarded
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(forwarded.last())
            .copied()
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let t = Trusted::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let nginx: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // through nginx: the address nginx appended
        assert_eq!(
            t.client(nginx, &headers("198.51.100.7")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // a client's own forged entry on the left does not count
        assert_eq!(
            t.client(nginx, &headers("1.2.3.4, 198.51.100.7")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // a chain of trusted proxies is skipped
        assert_eq!(
            t.client(nginx, &headers("198.51.100.7, 10.1.2.3")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // straight from the internet: the header is ignored
        assert_eq!(t.client(stranger, &headers("1.2.3.4")), stranger);
        // no one trusted: the peer, always
        assert_eq!(Trusted::default().client(nginx, &headers("1.2.3.4")), nginx);
        // every hop trusted (a client inside a trusted range): the address nginx saw, not
        // nginx's own and not the leftmost, which the client chose
        assert_eq!(
            t.client(nginx, &headers("10.9.9.9, 10.1.2.3")),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(counted(a), counted(b));
        assert_ne!(counted(a), counted(other));
        assert_eq!(counted(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(counted(v4), v4);
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(counted(mapped), v4);
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(Trusted::parse("localhost").is_err());
        assert!(Trusted::parse("10.0.0.0/33").is_err());
        assert!(Trusted::parse("").unwrap().ranges.is_empty());
        assert!(Trusted::parse("::1, fd00::/8").is_ok());
    }
}
