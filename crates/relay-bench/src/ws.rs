//! The client side of one WebSocket session, as every mode uses it: connect offering `realtime`
//! (returns at the 101), wait for `session.created`, hold while answering pings, one probe round
//! trip, a bounded close. Leaf functions over an `awc` `Framed`; each wait is bounded by its
//! caller or here.

use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::{
    ws::{CloseCode, Codec, Frame, Message},
    BoxedSocket,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;

use crate::plan::Phase;

/// Bound on connecting and receiving `session.created`.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on sending our Close and receiving the answer.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame the client accepts.
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A client WebSocket.
pub(crate) type Ws = Framed<BoxedSocket, Codec>;

/// Connects offering `realtime` and waits for `session.created`.
pub(crate) async fn open(client: &awc::Client, url: &str) -> Result<Ws, String> {
    let mut ws = upgrade(client, url).await?;
    await_created(&mut ws).await?;
    Ok(ws)
}

/// Connects offering `realtime` (with `Authorization: Bearer $RELAY_BENCH_TOKEN` when that is
/// set: a relay with client tokens); returns once the 101 has arrived.
pub(crate) async fn upgrade(client: &awc::Client, url: &str) -> Result<Ws, String> {
    let mut request = client
        .ws(url)
        .protocols(["realtime"])
        .max_frame_size(MAX_FRAME);
    if let Ok(token) = std::env::var("RELAY_BENCH_TOKEN") {
        request = request.bearer_auth(token);
    }
    let (_, ws) = request
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// Reads until the first event, which must be `session.created` (answering pings meanwhile).
pub(crate) async fn await_created(ws: &mut Ws) -> Result<(), String> {
    loop {
        match ws.next().await {
            Some(Ok(Frame::Text(text))) => {
                let event: Value = serde_json::from_slice(&text)
                    .map_err(|e| format!("first event is not JSON: {e}"))?;
                return if event["type"] == "session.created" {
                    Ok(())
                } else {
                    Err(format!(
                        "first event is {}, not session.created",
                        event["type"]
                    ))
                };
            }
            Some(Ok(Frame::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Some(Ok(Frame::Close(reason))) => {
                return Err(format!("closed before session.created: {reason:?}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("protocol error before session.created: {e}")),
            None => return Err("connection ended before session.created".into()),
        }
    }
}

/// Reads (answering pings, dropping data) until the run reaches `until`; false if the
/// connection ended meanwhile.
pub(crate) async fn hold_until(
    ws: &mut Ws,
    phase: &mut watch::Receiver<Phase>,
    until: Phase,
) -> bool {
    let mut alive = true;
    loop {
        if *phase.borrow_and_update() >= until {
            return alive;
        }
        if !alive {
            let _ = phase.wait_for(|p| *p >= until).await;
            return false;
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return alive;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Frame::Ping(p))) => {
                    let _ = ws.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => alive = false,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends one event and waits for its echo.
pub(crate) async fn probe_once(ws: &mut Ws, id: usize) -> Result<Duration, String> {
    let event_id = format!("p{id}_0");
    let text =
        format!(r#"{{"type":"input_audio_buffer.append","event_id":"{event_id}","audio":"AAAA"}}"#);
    let t0 = Instant::now();
    let exchange = async {
        ws.send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Frame::Text(b))) if event_id_of(&b) == Some(event_id.as_bytes()) => {
                    return Ok(t0.elapsed())
                }
                Some(Ok(Frame::Ping(p))) => {
                    let _ = ws.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(r))) => return Err(format!("closed: {r:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("protocol error: {e}")),
                None => return Err("connection ended".into()),
            }
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, exchange)
        .await
        .map_err(|_| "no echo within the timeout".to_owned())?
}

/// Sends a normal Close and reads until the answer (bounded).
pub(crate) async fn close(ws: &mut Ws) {
    let closing = async {
        if ws
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .is_err()
        {
            return;
        }
        while let Some(Ok(frame)) = ws.next().await {
            if matches!(frame, Frame::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

/// The value of the `event_id` field near the start of an event, without parsing the JSON.
pub(crate) fn event_id_of(text: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = br#""event_id":""#;
    let head = &text[..text.len().min(160)];
    let start = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = head[start..].iter().position(|&b| b == b'"')?;
    Some(&head[start..start + len])
}
