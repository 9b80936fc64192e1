//! Protocol behaviour of the relay, end to end: subprotocol selection (`subprotocols`), what the
//! upstream handshake carries (`handshake`), the query it forwards and the paths (`query`),
//! message flow: order, size, fragments, early messages (`messages`), size limits
//! (`size_limits`), close propagation both ways, abrupt client drops and ping answering
//! (`control`). Every test runs the real relay on 127.0.0.1:0 in front of the scriptable fake
//! upstream.

mod control;
mod handshake;
mod messages;
mod query;
mod size_limits;
mod subprotocols;

use awc::ws::Message;
use futures_util::SinkExt;

use crate::common::*;

async fn send(ws: &mut Ws, msg: Message) {
    tokio::time::timeout(T, ws.send(msg))
        .await
        .expect("send timed out")
        .expect("send succeeds");
}
