//! Who the client is, network-wise. Behind Nginx every peer is 127.0.0.1, so the relay believes
//! `X-Forwarded-For` / `X-Real-IP` only from peers in `TRUSTED_PROXIES`, and takes the right-most
//! hop that is not itself a trusted proxy (hops to the left of it could be forged by the client).

use std::net::IpAddr;

/// One `TRUSTED_PROXIES` entry: an address or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.trim().parse::<IpAddr>().ok()?,
                Some(p.trim().parse::<u8>().ok()?),
            ),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack listeners) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `TRUSTED_PROXIES` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    pub const DEFAULT: &'static str = "127.0.0.0/8,::1";

    /// Parses a comma list; returns the entries that do not parse as the error.
    pub fn parse(list: &str) -> Result<TrustedProxies, Vec<String>> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Cidr::parse(item) {
                Some(c) => ok.push(c),
                None => bad.push(item.to_string()),
            }
        }
        if bad.is_empty() {
            Ok(TrustedProxies(ok))
        } else {
            Err(bad)
        }
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address: `peer` itself unless `peer` is a trusted proxy, in which case the
    /// right-most untrusted `X-Forwarded-For` hop (or `X-Real-IP` when there is no
    /// `X-Forwarded-For`). Unparseable hops stop the walk: what is left of them is not believed.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
        real_ip: Option<&str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        if hops.is_empty() {
            return real_ip
                .and_then(|r| r.trim().parse::<IpAddr>().ok())
                .map_or(peer, canonical);
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn loopback() -> TrustedProxies {
        TrustedProxies::parse(TrustedProxies::DEFAULT).expect("default parses")
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains(ip("8.8.8.8")));
        assert!(Cidr::parse("fd00::/8").expect("v6").contains(ip("fd12::1")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert!(loopback().trusts(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let c = loopback().client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), Some("5.6.7.8"));
        assert_eq!(c, ip("203.0.113.9"));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let t = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").expect("parses");
        // The client forged "6.6.6.6"; Nginx appended the real address; an inner proxy added its own.
        let c = t.client_ip(
            ip("127.0.0.1"),
            ["6.6.6.6, 198.51.100.7", "10.0.0.5"].into_iter(),
            None,
        );
        assert_eq!(c, ip("198.51.100.7"));
    }

    #[test]
    fn real_ip_only_without_forwarded_for() {
        let c = loopback().client_ip(ip("127.0.0.1"), std::iter::empty(), Some("198.51.100.8"));
        assert_eq!(c, ip("198.51.100.8"));
        let none = loopback().client_ip(ip("127.0.0.1"), std::iter::empty(), None);
        assert_eq!(none, ip("127.0.0.1"));
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let c = loopback().client_ip(ip("127.0.0.1"), ["9.9.9.9, unknown"].into_iter(), None);
        assert_eq!(c, ip("127.0.0.1"));
        assert_eq!(
            TrustedProxies::parse("1.2.3.4, bad").unwrap_err(),
            vec!["bad".to_string()]
        );
    }
}
