//! Only pongs that answer the relay's own pings count as signs of life: a client that sends
//! pongs of its own and never reads (never sees a ping) misses its heartbeats and is ended.

use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};

use super::*;

/// With HEARTBEAT_INTERVAL=200 ms, a client that ignores the relay's pings but sends an
/// unsolicited pong every 50 ms (empty, or made up) is ended with `heartbeat_timeout` (1001).
#[actix_web::test]
async fn unsolicited_pongs_do_not_keep_a_client_alive() {
    let h = start(Script::echo(), &[("HEARTBEAT_INTERVAL", "200")]).await;
    let mut ws = connect(&h, "/realtime").await;
    let mut pings = 0;
    let mut error = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut n = 0u64;
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    n += 1;
                    let payload = if n.is_multiple_of(2) { Vec::new() } else { n.to_be_bytes().repeat(2) };
                    if ws.send(Message::Pong(payload.into())).await.is_err() {
                        return None;
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Frame::Ping(_))) => pings += 1,
                    Some(Ok(Frame::Text(b))) => {
                        error = Some(serde_json::from_slice::<Value>(&b).expect("JSON"));
                    }
                    Some(Ok(Frame::Close(reason))) => return reason,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                },
            }
        }
    })
    .await
    .expect("a client that only sends its own pongs was not ended within 25 heartbeat periods");
    assert!(pings >= 2, "ended after only {pings} pings");
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    let error = error.expect("an error event before the close");
    assert_eq!(error["error"]["code"], "heartbeat_timeout", "{error}");
    h.stop().await;
}
