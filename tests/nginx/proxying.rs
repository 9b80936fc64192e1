//! Through Nginx's TLS front end: the subprotocol, messages both ways, the server key upstream,
//! and the client's own address as the relay records it.

use crate::{
    common::{tools::tool, *},
    server::{connect_tls, round_trip, start_nginx, two_relays, CLIENT_IP},
};

/// Through Nginx's TLS front end the `realtime` subprotocol is selected and messages flow both ways.
#[actix_web::test]
async fn wss_through_nginx_keeps_subprotocol_and_messages() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[]).await;
    let nginx = start_nginx(
        &bin,
        "flow",
        &[a.local_addr(), b.local_addr()],
        "120s", // as shipped
    )
    .await;

    let (protocol, mut ws) = connect_tls(&nginx, &[]).await;
    assert_eq!(protocol.as_deref(), Some("realtime"));
    for i in 0..3 {
        round_trip(&mut ws, &format!("flow{i}")).await;
    }
    let hs = fake.recorder().wait_handshakes(1, T).await.expect("dialed");
    assert_eq!(
        hs[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );

    drop(nginx);
    stop_relay(a).await;
    stop_relay(b).await;
    stop_fake(fake).await;
}

/// The relay records the client's address from Nginx's X-Forwarded-For, not Nginx's, and a forged header does not change it.
#[actix_web::test]
async fn relay_sees_the_client_address_not_nginx() {
    let Some(bin) = tool("nginx") else { return };
    // Only Nginx (127.0.0.1) is trusted: the client's 127.0.0.2 is loopback too, and the default
    // 127.0.0.0/8 would make every hop trusted.
    let (fake, a, b) = two_relays(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let nginx = start_nginx(&bin, "client-ip", &[a.local_addr(), b.local_addr()], "120s").await;

    let (_, mut plain) = connect_tls(&nginx, &[]).await;
    let (_, mut forged) = connect_tls(&nginx, &[("X-Forwarded-For", "203.0.113.9")]).await;
    round_trip(&mut plain, "ip1").await;
    round_trip(&mut forged, "ip2").await;

    let mut all = stats::sessions(&http(&a)).await;
    all.extend(stats::sessions(&http(&b)).await);
    assert_eq!(all.len(), 2, "{all:?}");
    for s in &all {
        assert_eq!(s["client"], CLIENT_IP, "{all:?}");
    }

    drop(nginx);
    stop_relay(a).await;
    stop_relay(b).await;
    stop_fake(fake).await;
}
