//! Protocol behaviour of the relay, end to end: subprotocol selection (`subprotocols`), what the
//! upstream handshake carries (`handshake`), the query it forwards and the paths (`query`),
//! message flow: order, size, fragments, early messages (`messages`), size limits
//! (`size_limits`), close propagation both ways, abrupt client drops and ping answering
//! (`control`), a client that breaks the protocol (`strict`), bad upstream frames
//! (`upstream_frames`), frames whose header announces too much and tiny fragments
//! (`frame_limits`), and the Autobahn testsuite when it is installed (`autobahn`). Every test runs
//! the real relay on 127.0.0.1:0 in front of the scriptable fake upstream, or of a hand-written
//! one (`raw`).

mod autobahn;
mod control;
mod frame_limits;
mod handshake;
mod messages;
mod query;
pub(crate) mod raw;
mod size_limits;
mod strict;
mod subprotocols;
mod upstream_frames;

use awc::ws::Message;
use futures_util::SinkExt;

use crate::common::*;

async fn send(ws: &mut Ws, msg: Message) {
    tokio::time::timeout(T, ws.send(msg))
        .await
        .expect("send timed out")
        .expect("send succeeds");
}
