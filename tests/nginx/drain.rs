//! Two relays behind one Nginx: draining one closes its clients with 1012, the other serves on.

use crate::{
    common::{tools::tool, *},
    server::{connect_tls, round_trip, start_nginx, two_relays},
};

/// Draining one relay closes its clients with 1012 through Nginx; the other instance keeps its sessions and takes new ones.
#[actix_web::test]
async fn draining_one_relay_closes_its_clients_and_nginx_uses_the_other() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[("SHUTDOWN_TIMEOUT", "3000")]).await;
    let nginx = start_nginx(&bin, "drain", &[a.local_addr(), b.local_addr()], "120s").await;

    // least_conn with a shared zone: the second session goes to the instance without one.
    let (_, mut first) = connect_tls(&nginx, &[]).await;
    let (_, second) = connect_tls(&nginx, &[]).await;
    stats::wait_until(&http(&a), "1 active", |s| s["active_sessions"] == 1).await;
    stats::wait_until(&http(&b), "1 active", |s| s["active_sessions"] == 1).await;
    // Which client is on `a`: the one whose session `a` lists after a message from it.
    round_trip(&mut first, "which").await;
    let a_sessions = stats::sessions(&http(&a)).await;
    let first_on_a = a_sessions[0]["client_to_upstream_bytes"]
        .as_u64()
        .is_some_and(|b| b > 0);
    let (mut on_a, mut on_b) = if first_on_a {
        (first, second)
    } else {
        (second, first)
    };

    tokio::time::timeout(T, a.drain())
        .await
        .expect("drain timed out");

    let (error, close) = expect_close(&mut on_a).await;
    let error = error.expect("an error event before the close");
    assert_eq!(error["error"]["code"], "server_shutting_down", "{error}");
    let close = close.expect("close frame with a code");
    assert_eq!(u16::from(close.code), 1012, "{close:?}");

    round_trip(&mut on_b, "still-here").await;
    let (_, mut newcomer) = connect_tls(&nginx, &[]).await;
    round_trip(&mut newcomer, "new").await;
    stats::wait_until(&http(&b), "2 active", |s| s["active_sessions"] == 2).await;

    drop(nginx);
    stop_relay(b).await;
    stop_fake(fake).await;
}
