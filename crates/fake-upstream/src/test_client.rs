//! The awc client the unit tests talk to the fake with: connect, read the next frame or JSON
//! event or a whole response, send; every await bounded by [`T`].

use std::time::Duration;

use awc::ws;
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::Value;

pub(crate) const T: Duration = Duration::from_secs(5);

pub(crate) async fn connect(
    url: &str,
) -> (
    awc::ClientResponse,
    impl Stream<Item = Result<ws::Frame, actix_ws::ProtocolError>>
        + futures_util::Sink<ws::Message, Error = actix_ws::ProtocolError>
        + Unpin,
) {
    let connecting = awc::Client::new()
        .ws(url)
        .protocols(["realtime"])
        .header("Authorization", "Bearer sk-test")
        .connect();
    tokio::time::timeout(T, connecting)
        .await
        .expect("connect in time")
        .expect("upgrade accepted")
}

/// The next frame other than a ping or pong; None when the stream ended.
pub(crate) async fn next_frame<S>(
    framed: &mut S,
) -> Option<Result<ws::Frame, actix_ws::ProtocolError>>
where
    S: Stream<Item = Result<ws::Frame, actix_ws::ProtocolError>> + Unpin,
{
    loop {
        let next = tokio::time::timeout(T, framed.next())
            .await
            .expect("frame in time");
        if let Some(Ok(ws::Frame::Ping(_) | ws::Frame::Pong(_))) = next {
            continue;
        }
        return next;
    }
}

pub(crate) async fn next_json<S>(framed: &mut S) -> Value
where
    S: Stream<Item = Result<ws::Frame, actix_ws::ProtocolError>> + Unpin,
{
    match next_frame(framed).await {
        Some(Ok(ws::Frame::Text(bytes))) => serde_json::from_slice(&bytes).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

pub(crate) async fn send<S>(framed: &mut S, msg: ws::Message)
where
    S: futures_util::Sink<ws::Message, Error = actix_ws::ProtocolError> + Unpin,
{
    tokio::time::timeout(T, framed.send(msg))
        .await
        .expect("send in time")
        .expect("send ok");
}

/// Sends `events` in order.
pub(crate) async fn send_all<S>(framed: &mut S, events: &[String])
where
    S: futures_util::Sink<ws::Message, Error = actix_ws::ProtocolError> + Unpin,
{
    for event in events {
        send(framed, ws::Message::Text(event.clone().into())).await;
    }
}

/// Every event up to and including the next `response.done`.
pub(crate) async fn until_done<S>(framed: &mut S) -> Vec<Value>
where
    S: futures_util::Stream<Item = Result<ws::Frame, actix_ws::ProtocolError>> + Unpin,
{
    let mut events = Vec::new();
    loop {
        let event = next_json(framed).await;
        let done = event["type"] == "response.done";
        events.push(event);
        if done {
            return events;
        }
        assert!(events.len() < 100, "no response.done in {events:?}");
    }
}

/// The events of type `kind` among `events`.
pub(crate) fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}
