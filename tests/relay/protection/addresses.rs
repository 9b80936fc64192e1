//! How a client's address keys it when no token identity applies: IPv4 by the address, IPv6 by
//! its /64 (`IPV6_PREFIX_LENGTH`), so rotating inside one's own /64 does not buy more sessions.
//! Addresses come through `X-Forwarded-For` from the test client on loopback, a trusted proxy.

use super::*;

/// Opens `/` as a client the proxy on loopback forwards for `address`; returns the socket and
/// the first event (`session.created`, or the refusal's `error`).
async fn open_from(h: &Harness, address: &str) -> (Ws, Value) {
    let (_, mut ws) = connect_with(
        &format!("{}/", h.base),
        &["realtime"],
        &[("X-Forwarded-For", address)],
    )
    .await
    .expect("upgrade succeeds");
    let first = next_json(&mut ws).await;
    (ws, first)
}

/// MAX_CONNECTIONS_PER_CLIENT=1 on an open relay: a second address in the same IPv6 /64 is the
/// same client (`too_many_connections`), another /64 and other IPv4 addresses are not; /stats
/// names the client `ip:<prefix>/64`.
#[actix_web::test]
async fn ipv6_clients_are_keyed_by_their_64() {
    let h = start(Script::demo(), &[("MAX_CONNECTIONS_PER_CLIENT", "1")]).await;
    let (_a, first) = open_from(&h, "2001:db8:1:2::a").await;
    assert_eq!(first["type"], "session.created", "{first}");
    let (_b, refused) = open_from(&h, "2001:db8:1:2:ffff:ffff:ffff:ffff").await;
    assert_eq!(
        refused["error"]["code"], "too_many_connections",
        "{refused}"
    );
    let (_c, other_64) = open_from(&h, "2001:db8:1:3::a").await;
    assert_eq!(other_64["type"], "session.created", "{other_64}");
    let mut v4_sessions = Vec::new();
    for v4 in ["198.51.100.1", "198.51.100.2"] {
        let (ws, first) = open_from(&h, v4).await;
        assert_eq!(first["type"], "session.created", "{v4}: {first}");
        v4_sessions.push(ws);
    }
    let s = stats::sessions(&h.http()).await;
    let identities: Vec<&str> = s.iter().filter_map(|x| x["identity"].as_str()).collect();
    assert!(
        identities.contains(&"ip:2001:db8:1:2::/64"),
        "{identities:?}"
    );
    assert!(identities.contains(&"ip:198.51.100.1"), "{identities:?}");
    h.stop().await;
}

/// IPV6_PREFIX_LENGTH=128 keys every IPv6 address on its own, as before.
#[actix_web::test]
async fn prefix_length_128_keys_each_address() {
    let h = start(
        Script::demo(),
        &[
            ("MAX_CONNECTIONS_PER_CLIENT", "1"),
            ("IPV6_PREFIX_LENGTH", "128"),
        ],
    )
    .await;
    let (_a, a) = open_from(&h, "2001:db8:1:2::a").await;
    let (_b, b) = open_from(&h, "2001:db8:1:2::b").await;
    assert_eq!(a["type"], "session.created", "{a}");
    assert_eq!(b["type"], "session.created", "{b}");
    let (_c, again) = open_from(&h, "2001:db8:1:2::a").await;
    assert_eq!(again["error"]["code"], "too_many_connections", "{again}");
    h.stop().await;
}
