//! [`TestPeer`], a webrtc-rs client peer standing in for a browser in tests (this crate's and
//! the relay's): it offers an `oai-events` data channel and a microphone (an Opus track), on
//! loopback like the fake, applies the answer it is given, reads and sends events on the data
//! channel and sends silent audio. A test helper: every step panics when it fails or takes longer
//! than [`T`]. It lives until the test closes or drops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::Value;
use tokio::sync::watch;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCSessionDescription,
};
use webrtc::rtp_transceiver::RtpSender;

use super::peer::{gathered_sdp, loopback_peer, EVENTS_LABEL};

/// The longest any one step may take.
const T: Duration = Duration::from_secs(10);

/// The boundary of the forms [`TestPeer::form`] makes.
pub(crate) const BOUNDARY: &str = "----fakeUpstreamCallBoundary7MA4YWxk";

/// A multipart body with parts `sdp` and `session`, CRLF-delimited, with [`BOUNDARY`].
pub(crate) fn form(sdp: &str, session: &Value) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\r\n{sdp}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"session\"\r\n\
         Content-Type: application/json\r\n\r\n{session}\r\n--{BOUNDARY}--\r\n"
    )
}

/// The SSRC of the test peer's microphone.
const MIC_SSRC: u32 = 0x0fa4_e001;

/// One 20 ms Opus frame of silence (a CELT-only TOC byte and an empty frame).
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// Tells the test when ICE gathering is complete.
struct Gathering(watch::Sender<bool>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Gathering {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.0.send_replace(true);
        }
    }
}

/// A browser-like client peer with its offer made; see the module docs.
pub struct TestPeer {
    peer: Arc<dyn PeerConnection>,
    channel: Arc<dyn DataChannel>,
    mic: Arc<TrackLocalStaticSample>,
    mic_sender: Arc<dyn RtpSender>,
    /// The SDP offer, with its candidates (gathered before posting: no trickle).
    pub offer: String,
}

impl TestPeer {
    /// A peer with an `oai-events` channel and a microphone, offered.
    pub async fn offer() -> TestPeer {
        let (gathered_tx, gathered) = watch::channel(false);
        let peer = loopback_peer(Arc::new(Gathering(gathered_tx)))
            .await
            .expect("client peer");
        let channel = peer
            .create_data_channel(EVENTS_LABEL, None)
            .await
            .expect("data channel");
        let opus = RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        };
        let encoding = RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(MIC_SSRC),
                ..Default::default()
            },
            codec: opus,
            ..Default::default()
        };
        let track = MediaStreamTrack::new(
            "mic-stream".to_owned(),
            "mic".to_owned(),
            "microphone".to_owned(),
            RtpCodecKind::Audio,
            vec![encoding],
        );
        let mic = Arc::new(TrackLocalStaticSample::new(Instant::now(), track).expect("mic track"));
        let mic_sender = peer
            .add_track(Arc::clone(&mic) as Arc<dyn TrackLocal>)
            .await
            .expect("mic added");
        let offer = peer.create_offer(None).await.expect("offer");
        peer.set_local_description(offer)
            .await
            .expect("local offer");
        let offer = gathered_sdp(peer.as_ref(), gathered)
            .await
            .expect("gathered offer");
        TestPeer {
            peer,
            channel,
            mic,
            mic_sender,
            offer,
        }
    }

    /// The offer as a `multipart/form-data` body with `session`: (its `Content-Type`, the body).
    pub fn form(&self, session: &Value) -> (String, String) {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        (content_type, form(&self.offer, session))
    }

    /// Applies the SDP answer (the body of a 201).
    pub async fn answer(&self, sdp: &str) {
        let answer = RTCSessionDescription::answer(sdp.to_owned()).expect("answer SDP");
        tokio::time::timeout(T, self.peer.set_remote_description(answer))
            .await
            .expect("answer applied in time")
            .expect("answer applied");
    }

    /// Waits for the data channel to open.
    pub async fn opened(&self) {
        loop {
            match self.next_event().await {
                DataChannelEvent::OnOpen => return,
                DataChannelEvent::OnMessage(_) => panic!("a message before the channel opened"),
                _ => {}
            }
        }
    }

    /// The next message on the data channel, as JSON.
    pub async fn next_json(&self) -> Value {
        loop {
            if let DataChannelEvent::OnMessage(message) = self.next_event().await {
                return serde_json::from_slice(&message.data).expect("JSON event");
            }
        }
    }

    /// Every event up to and including the next `response.done`.
    pub async fn until_done(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next_json().await;
            let done = event["type"] == "response.done";
            events.push(event);
            if done {
                return events;
            }
            assert!(events.len() < 100, "no response.done in {events:?}");
        }
    }

    /// Sends a client event on the data channel.
    pub async fn send(&self, text: &str) {
        tokio::time::timeout(T, self.channel.send_text(text))
            .await
            .expect("sent in time")
            .expect("sent");
    }

    /// Sends `frames` frames of silence (20 ms each) from the microphone, once connected.
    pub async fn speak(&self, frames: usize) {
        let parameters = tokio::time::timeout(T, self.mic_sender.get_parameters())
            .await
            .expect("parameters in time")
            .expect("sender parameters");
        let payload_type = parameters
            .rtp_parameters
            .codecs
            .first()
            .expect("a negotiated codec")
            .payload_type;
        for _ in 0..frames {
            let sample = Sample {
                data: Bytes::from_static(&OPUS_SILENCE),
                duration: Duration::from_millis(20),
                ..Sample::new(Instant::now())
            };
            let writing = self
                .mic
                .sample_writer(MIC_SSRC, payload_type)
                .write_sample(&sample);
            tokio::time::timeout(T, writing)
                .await
                .expect("written in time")
                .expect("written");
        }
    }

    /// Closes the peer connection, as a browser tab going away would.
    pub async fn close(&self) {
        tokio::time::timeout(T, self.peer.close())
            .await
            .expect("closed in time")
            .expect("closed");
    }

    async fn next_event(&self) -> DataChannelEvent {
        tokio::time::timeout(T, self.channel.poll())
            .await
            .expect("data channel event in time")
            .expect("data channel open")
    }
}
