//! The fake's side of a WebRTC call: a webrtc-rs peer connection on loopback only, with the
//! default codecs and interceptors. [`answer`] applies the browser's offer and returns the SDP
//! answer once ICE gathering is complete (no trickle); its callbacks ([`Events`]) tell the call's
//! task when the `oai-events` data channel opens, what arrives on it, and when the browser's side
//! goes away, and count the browser's audio packets. Called by the calls endpoint; the peer lives
//! until the call's task closes it.
//!
//! Loopback only: the one UDP socket is bound to 127.0.0.1 (webrtc-rs 0.21 makes host candidates
//! from the bound sockets, so nothing else is offered; it has no interface or IP filter), no TCP,
//! no STUN or TURN servers, mDNS disabled (no multicast socket, no `.local` candidates). The
//! browser must allow loopback candidates (Chromium: `--allow-loopback-in-peer-connection`) and
//! offer plain IPs rather than mDNS names (`--disable-features=WebRtcHideLocalIpsWithMdns`).

use std::sync::Arc;
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

use super::msg::Input;
use crate::recorder::{Recorder, Source};

/// The label of the data channel that carries Realtime events.
pub(crate) const EVENTS_LABEL: &str = "oai-events";

/// ICE on loopback: a peer silent this long is disconnected, this much longer failed (which
/// ends the call), and the fake checks the pair this often. A vanished browser is noticed in
/// about five seconds rather than the default thirty.
const ICE_DISCONNECTED: Duration = Duration::from_secs(2);
const ICE_FAILED: Duration = Duration::from_secs(3);
const ICE_KEEPALIVE: Duration = Duration::from_millis(500);

/// How long ICE gathering may take before the call is refused (on loopback it takes
/// milliseconds).
const GATHERING_LIMIT: Duration = Duration::from_secs(5);

/// Why no answer could be made.
#[derive(Debug)]
pub(crate) enum PeerError {
    /// The offer was not one the peer could apply (the client's fault: 400).
    BadOffer(String),
    /// The peer could not be built or gather (the fake's fault: 500).
    Internal(String),
}

/// A peer connection on loopback only (see the module docs), reporting to `handler`.
pub(crate) async fn loopback_peer(
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let internal = |e: webrtc::error::Error| PeerError::Internal(e.to_string());
    let mut media = MediaEngine::default();
    media.register_default_codecs().map_err(internal)?;
    let interceptors =
        register_default_interceptors(Registry::new(), &mut media).map_err(internal)?;
    let settings = SettingEngineBuilder::new()
        .with_include_loopback_candidate(true)
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_ice_timeouts(
            Some(ICE_DISCONNECTED),
            Some(ICE_FAILED),
            Some(ICE_KEEPALIVE),
        )
        .build();
    let peer = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(interceptors)
        .with_setting_engine(settings)
        .with_handler(handler)
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .map_err(internal)?;
    Ok(Arc::new(peer))
}

/// The local description's SDP once `gathered` says ICE gathering is complete.
pub(crate) async fn gathered_sdp(
    peer: &dyn PeerConnection,
    mut gathered: watch::Receiver<bool>,
) -> Result<String, PeerError> {
    tokio::time::timeout(GATHERING_LIMIT, gathered.wait_for(|done| *done))
        .await
        .map_err(|_| PeerError::Internal("ICE gathering did not complete".into()))?
        .map_err(|_| PeerError::Internal("the peer went away while gathering".into()))?;
    peer.local_description()
        .await
        .map(|description| description.sdp)
        .ok_or_else(|| PeerError::Internal("no local description".into()))
}

/// A new peer for call `call_id` that has applied `offer`; returns it and its SDP answer. What
/// the peer notices goes to `inbox`; the browser's audio packets are counted in `recorder`.
pub(crate) async fn answer(
    offer: &str,
    call_id: &str,
    inbox: mpsc::Sender<Input>,
    recorder: Arc<Recorder>,
) -> Result<(Arc<dyn PeerConnection>, String), PeerError> {
    let (gathered_tx, gathered) = watch::channel(false);
    let events = Events {
        call_id: call_id.to_owned(),
        inbox,
        gathered: gathered_tx,
        recorder,
    };
    let peer = loopback_peer(Arc::new(events)).await?;
    match negotiate(peer.as_ref(), offer, gathered).await {
        Ok(sdp) => Ok((peer, sdp)),
        Err(err) => {
            let _ = peer.close().await;
            Err(err)
        }
    }
}

async fn negotiate(
    peer: &dyn PeerConnection,
    offer: &str,
    gathered: watch::Receiver<bool>,
) -> Result<String, PeerError> {
    let bad = |e: webrtc::error::Error| PeerError::BadOffer(e.to_string());
    let offer = RTCSessionDescription::offer(offer.to_owned()).map_err(bad)?;
    peer.set_remote_description(offer).await.map_err(bad)?;
    let answer = peer.create_answer(None).await.map_err(bad)?;
    peer.set_local_description(answer)
        .await
        .map_err(|e| PeerError::Internal(e.to_string()))?;
    gathered_sdp(peer, gathered).await
}

/// A call's peer callbacks. They run on the peer's driver, so anything that waits is spawned.
struct Events {
    call_id: String,
    inbox: mpsc::Sender<Input>,
    gathered: watch::Sender<bool>,
    recorder: Arc<Recorder>,
}

impl Events {
    /// Tells the call's task `input` without holding up the driver.
    fn tell(&self, input: Input) {
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let _ = inbox.send(input).await;
        });
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        log::debug!(
            "fake upstream call peer state call={} state={state}",
            self.call_id
        );
        if matches!(
            state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            self.tell(Input::PeerGone);
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        tokio::spawn(pump_channel(channel, self.inbox.clone()));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let (recorder, call_id) = (Arc::clone(&self.recorder), self.call_id.clone());
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(_) = event {
                    recorder.count_audio_packet(&call_id);
                }
            }
        });
    }
}

/// Forwards what happens on data channel `channel` to the call: its opening, its text messages
/// and its end, which ends the call. Channels with another label are drained and ignored.
async fn pump_channel(channel: Arc<dyn DataChannel>, inbox: mpsc::Sender<Input>) {
    let events = channel
        .label()
        .await
        .is_ok_and(|label| label == EVENTS_LABEL);
    while let Some(event) = channel.poll().await {
        let input = match event {
            _ if !events => continue,
            DataChannelEvent::OnOpen => Input::ChannelOpen(Arc::clone(&channel)),
            DataChannelEvent::OnMessage(message) if message.is_string => {
                match String::from_utf8(message.data.to_vec()) {
                    Ok(text) => Input::Client {
                        source: Source::DataChannel,
                        connection: None,
                        text,
                    },
                    Err(_) => continue,
                }
            }
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        if inbox.send(input).await.is_err() {
            return;
        }
    }
    if events {
        let _ = inbox.send(Input::PeerGone).await;
    }
}
