//! Who the client is, network-wise: [`TrustedProxies`] (`TRUSTED_PROXIES`, blocks matched with
//! `ipnet`) and the client address behind them. Behind Nginx every peer is 127.0.0.1, so the
//! relay believes `X-Forwarded-For` / `X-Real-IP` only from peers in `TRUSTED_PROXIES`, and takes
//! the right-most hop that is not itself a trusted proxy (hops to the left of it could be forged
//! by the client). `config` parses the list; the HTTP upgrade asks it for each client's address.
//! [`address_key`] is how an address is keyed when it stands for a client (`IPV6_PREFIX_LENGTH`).

use std::net::IpAddr;

use ipnet::IpNet;

/// One `TRUSTED_PROXIES` entry: an address (a one-address block) or a CIDR block; spaces around
/// the `/` are allowed, host bits after the prefix are ignored.
fn parse_block(s: &str) -> Option<IpNet> {
    match s.split_once('/') {
        Some((addr, prefix)) => {
            IpNet::new(addr.trim().parse().ok()?, prefix.trim().parse().ok()?).ok()
        }
        None => Some(IpNet::from(s.trim().parse::<IpAddr>().ok()?)),
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack listeners) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The default `IPV6_PREFIX_LENGTH`: a household or host usually gets a whole /64 and may pick
/// any address inside it, so one /64 is one client.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;

/// How an address is keyed when it stands for a client (identity, limits, the auth-failure
/// throttle): an IPv4 address as it is; an IPv6 address cut to its first `v6_prefix` bits
/// (1..=128) and written as a block (`2001:db8:1:2::/64`), or as the address itself at 128.
/// IPv4-mapped IPv6 addresses are IPv4.
pub(crate) fn address_key(ip: IpAddr, v6_prefix: u8) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6_prefix >= 128 => v6.to_string(),
        IpAddr::V6(v6) => {
            // A prefix of 0 would make every IPv6 client one; config allows 1..=128.
            let prefix = v6_prefix.max(1);
            let mask = u128::MAX << (128 - u32::from(prefix));
            let network = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("{network}/{prefix}")
        }
    }
}

/// The `TRUSTED_PROXIES` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) const DEFAULT: &'static str = "127.0.0.0/8,::1";

    /// No proxy is trusted: every peer is the client.
    pub(crate) fn none() -> TrustedProxies {
        TrustedProxies(Vec::new())
    }

    /// Parses a comma list; returns the entries that do not parse as the error.
    pub(crate) fn parse(list: &str) -> Result<TrustedProxies, Vec<String>> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match parse_block(item) {
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

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: `peer` itself unless `peer` is a trusted proxy, in which case the
    /// right-most untrusted `X-Forwarded-For` hop (or `X-Real-IP` when there is no
    /// `X-Forwarded-For`). Unparseable hops stop the walk: what is left of them is not believed.
    pub(crate) fn client_ip<'a>(
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

    /// Blocks match their addresses only; bad prefixes and non-addresses do not parse; an
    /// IPv4-mapped peer matches its IPv4 block.
    #[test]
    fn cidr_matching() {
        let c = parse_block("10.1.0.0/16").expect("cidr");
        assert!(c.contains(&ip("10.1.200.3")));
        assert!(!c.contains(&ip("10.2.0.1")));
        assert!(parse_block("0.0.0.0/0")
            .expect("all")
            .contains(&ip("8.8.8.8")));
        assert!(parse_block("fd00::/8")
            .expect("v6")
            .contains(&ip("fd12::1")));
        assert!(parse_block("10.0.0.0/33").is_none());
        assert!(parse_block("nonsense").is_none());
        assert!(loopback().trusts(ip("::ffff:127.0.0.1")));
    }

    /// What the hand-written matcher accepted still parses the same way: spaces around `/`,
    /// host bits after the prefix, a bare address as a one-address block.
    #[test]
    fn block_syntax() {
        assert!(parse_block(" 10.0.0.0 / 8 ")
            .expect("spaced")
            .contains(&ip("10.9.9.9")));
        assert!(parse_block("10.1.2.3/16")
            .expect("host bits")
            .contains(&ip("10.1.0.1")));
        let one = parse_block("192.0.2.1").expect("address");
        assert!(one.contains(&ip("192.0.2.1")) && !one.contains(&ip("192.0.2.2")));
        // Peers are compared in IPv4 form, so an IPv4-mapped block never matches.
        let mapped = TrustedProxies::parse("::ffff:10.0.0.0/104").expect("mapped block");
        assert!(!mapped.trusts(ip("::ffff:10.0.0.1")));
    }

    /// A peer that is not a trusted proxy is the client, whatever its headers say.
    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let c = loopback().client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), Some("5.6.7.8"));
        assert_eq!(c, ip("203.0.113.9"));
    }

    /// Behind trusted proxies the right-most untrusted hop is the client, not a forged one.
    #[test]
    fn rightmost_untrusted_hop_wins() {
        let t = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").expect("parses");
        // The client forged "6.6.6.6"; Nginx appended the real address; an inner proxy its own.
        let c = t.client_ip(
            ip("127.0.0.1"),
            ["6.6.6.6, 198.51.100.7", "10.0.0.5"].into_iter(),
            None,
        );
        assert_eq!(c, ip("198.51.100.7"));
    }

    /// X-Real-IP counts only without X-Forwarded-For; with neither, the peer is the client.
    #[test]
    fn real_ip_only_without_forwarded_for() {
        let c = loopback().client_ip(ip("127.0.0.1"), std::iter::empty(), Some("198.51.100.8"));
        assert_eq!(c, ip("198.51.100.8"));
        let none = loopback().client_ip(ip("127.0.0.1"), std::iter::empty(), None);
        assert_eq!(none, ip("127.0.0.1"));
    }

    /// IPv4 is keyed as it is; IPv6 by its prefix, as a block, or as itself at 128.
    #[test]
    fn address_keys() {
        assert_eq!(address_key(ip("198.51.100.7"), 64), "198.51.100.7");
        assert_eq!(address_key(ip("::ffff:198.51.100.7"), 64), "198.51.100.7");
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1"), 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1"), 48),
            "2001:db8:1::/48"
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1"), 128),
            "2001:db8:1:2:aaaa::1"
        );
        assert_eq!(address_key(ip("2001:db8::1"), 1), "::/1");
        assert_eq!(address_key(ip("::1"), 64), "::/64");
    }

    /// An unparseable hop stops the walk; unparseable list entries are returned as the error.
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
