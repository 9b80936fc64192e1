//! Nginx's proxy_read_timeout against an idle session: the relay's pings keep it open, and
//! without them Nginx cuts it.

use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};

use crate::{
    common::{tools::tool, *},
    server::{connect_tls, round_trip, start_nginx, two_relays},
};

/// A session idle for longer than Nginx's proxy_read_timeout survives, because the relay's pings cross Nginx.
#[actix_web::test]
async fn idle_session_survives_nginx_read_timeout_through_heartbeats() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[("HEARTBEAT_INTERVAL", "300")]).await;
    let nginx = start_nginx(&bin, "heartbeat", &[a.local_addr(), b.local_addr()], "1s").await;
    let (_, mut ws) = connect_tls(&nginx, &[]).await;

    // The idle period is the behaviour under test, not a readiness wait: 2.5 s is well past
    // Nginx's 1 s read timeout. The client answers pings (as browsers do) and sends no data.
    let idle = Duration::from_millis(2500);
    let deadline = tokio::time::Instant::now() + idle;
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Frame::Ping(p)))) => {
                pings += 1;
                let _ = timed("a pong", ws.send(Message::Pong(p))).await;
            }
            Ok(other) => panic!(
                "idle session got {other:?} after {pings} pings\n{}",
                nginx.error_log()
            ),
        }
    }
    assert!(pings >= 4, "only {pings} pings in {idle:?}");
    round_trip(&mut ws, "after-idle").await;

    drop(nginx);
    stop_relay(a).await;
    stop_relay(b).await;
    stop_fake(fake).await;
}

/// Without heartbeats within Nginx's proxy_read_timeout, the same idle session is cut (so the test above can fail).
#[actix_web::test]
async fn idle_session_without_heartbeats_is_cut_by_nginx() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[("HEARTBEAT_INTERVAL", "60000")]).await;
    let nginx = start_nginx(
        &bin,
        "no-heartbeat",
        &[a.local_addr(), b.local_addr()],
        "1s",
    )
    .await;
    let (_, mut ws) = connect_tls(&nginx, &[]).await;
    let started = Instant::now();
    loop {
        match tokio::time::timeout(T, ws.next())
            .await
            .expect("nginx never cut the idle session")
        {
            Some(Ok(Frame::Ping(p))) => {
                let _ = timed("a pong", ws.send(Message::Pong(p))).await;
            }
            None | Some(Err(_)) | Some(Ok(Frame::Close(_))) => break,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut after {:?}, before the read timeout",
        started.elapsed()
    );

    drop(nginx);
    stop_relay(a).await;
    stop_relay(b).await;
    stop_fake(fake).await;
}
