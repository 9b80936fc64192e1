//! What the demo says back, decided by what the client gave it since the last response
//! ([`Prompt`]): the fixed greeting, "I heard 1.4 seconds of audio." for committed audio, or an
//! echo of a text message. A [`Reply`] is the transcript in pieces, the audio for each piece and
//! the usage; `respond.rs` streams it. Every reply is bounded: at most [`MAX_PIECES`] pieces of
//! at most [`NOTE`] samples each, an echo at most [`MAX_ECHO_CHARS`] characters.

use serde_json::{json, Value};

use super::pcm::{encode, RATE};

/// Pieces (transcript delta plus audio delta) in one reply at most.
pub(super) const MAX_PIECES: usize = 16;

/// Samples of one chime note, one per piece (200 ms).
pub(super) const NOTE: usize = (RATE / 5) as usize;

/// Characters of a text message echoed at most; longer ones are cut and end in "…".
pub(super) const MAX_ECHO_CHARS: usize = 200;

/// Base64 of 10 ms of silence, the fixed greeting's audio for each piece.
const SILENCE_DELTA_CHARS: usize = 640;

/// Text tokens the demo charges for its instructions in every response.
const INSTRUCTION_TOKENS: u64 = 10;

/// What the client gave the demo since its last response.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) enum Prompt {
    /// Nothing: the fixed greeting.
    #[default]
    Nothing,
    /// A commit of this many samples of audio.
    Audio { samples: u64 },
    /// A user text message, cut to [`MAX_ECHO_CHARS`].
    Text(String),
}

impl Prompt {
    /// A user text message, cut to [`MAX_ECHO_CHARS`] so a long one costs nothing to keep.
    pub(super) fn text(text: &str) -> Prompt {
        match text.char_indices().nth(MAX_ECHO_CHARS) {
            None => Prompt::Text(text.to_owned()),
            Some((cut, _)) => Prompt::Text(format!("{}…", &text[..cut])),
        }
    }
}

/// One response's content.
#[derive(Debug)]
pub(super) struct Reply {
    prompt: Prompt,
    pieces: Vec<String>,
}

impl Reply {
    /// The answer to `prompt`.
    pub(super) fn to(prompt: Prompt) -> Reply {
        let said = match &prompt {
            Prompt::Nothing => return Reply::greeting(),
            Prompt::Audio { samples } => format!("I heard {} of audio.", seconds(*samples)),
            Prompt::Text(text) => format!("You said: {text}"),
        };
        let words: Vec<&str> = said.split_inclusive(' ').collect();
        let per_piece = words.len().div_ceil(MAX_PIECES).max(1);
        let pieces = words.chunks(per_piece).map(|w| w.concat()).collect();
        Reply { prompt, pieces }
    }

    /// The fixed greeting every test of the relay knows: four pieces, silent audio, 32 tokens.
    fn greeting() -> Reply {
        let pieces = ["Hello ", "from the ", "fake ", "upstream."];
        Reply {
            prompt: Prompt::Nothing,
            pieces: pieces.map(String::from).to_vec(),
        }
    }

    /// The transcript, in the pieces it is streamed in.
    pub(super) fn pieces(&self) -> &[String] {
        &self.pieces
    }

    /// The whole transcript.
    pub(super) fn transcript(&self) -> String {
        self.pieces.concat()
    }

    /// Base64 PCM16 for piece `index`: a chime note, or 10 ms of silence for the greeting.
    pub(super) fn audio(&self, index: usize) -> String {
        match self.prompt {
            Prompt::Nothing => "A".repeat(SILENCE_DELTA_CHARS),
            _ => encode(&note(index)),
        }
    }

    /// `response.usage`: about 10 audio tokens a second in, 20 out, a token a word of text.
    pub(super) fn usage(&self, text_only: bool) -> Value {
        let (text_in, audio_in) = match &self.prompt {
            Prompt::Nothing => {
                return json!({
                    "total_tokens": 32,
                    "input_tokens": 12,
                    "output_tokens": 20,
                    "input_token_details": {"text_tokens": 10, "audio_tokens": 2, "cached_tokens": 0},
                    "output_token_details": {"text_tokens": 5, "audio_tokens": 15},
                })
            }
            Prompt::Audio { samples } => (INSTRUCTION_TOKENS, tokens(*samples, 10)),
            Prompt::Text(text) => (
                INSTRUCTION_TOKENS + text.chars().count().div_ceil(4) as u64,
                0,
            ),
        };
        let text_out = self.transcript().split_whitespace().count() as u64;
        let audio_out = if text_only {
            0
        } else {
            tokens((self.pieces.len() * NOTE) as u64, 20)
        };
        let (input, output) = (text_in + audio_in, text_out + audio_out);
        json!({
            "total_tokens": input + output,
            "input_tokens": input,
            "output_tokens": output,
            "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        })
    }
}

/// "1.4 seconds", to a tenth.
pub(super) fn seconds(samples: u64) -> String {
    format!("{:.1} seconds", samples as f64 / RATE as f64)
}

/// Tokens for `samples` of audio at `per_second`, rounded, at least one for any audio.
fn tokens(samples: u64, per_second: u64) -> u64 {
    if samples == 0 {
        return 0;
    }
    ((samples * per_second + RATE / 2) / RATE).max(1)
}

/// Chime note `index`: a pentatonic pitch with its octave, struck and fading, at most a
/// quarter of full scale; it starts and ends at silence so consecutive notes do not click.
fn note(index: usize) -> Vec<i16> {
    const PITCHES: [f64; 5] = [523.25, 587.33, 659.25, 783.99, 880.0];
    let pitch = PITCHES[index % PITCHES.len()];
    let rate = RATE as f64;
    let edge = rate * 0.005;
    (0..NOTE)
        .map(|i| {
            let t = i as f64 / rate;
            let to_end = (NOTE - i) as f64;
            let envelope =
                (i as f64 / edge).min(1.0) * (to_end / edge).min(1.0) * (-t / 0.12).exp();
            let phase = 2.0 * std::f64::consts::PI * pitch * t;
            let wave = 0.8 * phase.sin() + 0.2 * (2.0 * phase).sin();
            (8000.0 * envelope * wave) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With nothing given, the reply is the greeting the relay's tests pin: 32 tokens, split
    /// 12/20, whatever the modality.
    #[test]
    fn nothing_gets_the_fixed_greeting() {
        let reply = Reply::to(Prompt::Nothing);
        assert_eq!(reply.transcript(), "Hello from the fake upstream.");
        assert_eq!(reply.pieces().len(), 4);
        assert_eq!(reply.audio(0), "A".repeat(640));
        for text_only in [false, true] {
            let usage = reply.usage(text_only);
            assert_eq!(usage["total_tokens"], 32);
            assert_eq!(usage["input_tokens"], 12);
            assert_eq!(usage["output_token_details"]["audio_tokens"], 15);
        }
    }

    /// 1.4 s of audio: the transcript says so, 14 audio tokens in, 20 a second of chime out,
    /// and the total adds up.
    #[test]
    fn audio_is_described_and_charged_by_the_second() {
        let reply = Reply::to(Prompt::Audio { samples: 33_600 });
        assert_eq!(reply.transcript(), "I heard 1.4 seconds of audio.");
        let usage = reply.usage(false);
        assert_eq!(usage["input_token_details"]["audio_tokens"], 14);
        let out_seconds = (reply.pieces().len() * NOTE) as f64 / RATE as f64;
        assert_eq!(
            usage["output_token_details"]["audio_tokens"],
            (out_seconds * 20.0).round() as u64
        );
        assert_eq!(usage["output_token_details"]["text_tokens"], 6);
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
            )
        );
        assert_eq!(reply.usage(true)["output_token_details"]["audio_tokens"], 0);
    }

    /// A long text message is echoed cut to its limit, in no more than the maximum of pieces.
    #[test]
    fn long_echoes_are_bounded() {
        let long = "word ".repeat(1000);
        let reply = Reply::to(Prompt::text(&long));
        assert!(
            reply.pieces().len() <= MAX_PIECES,
            "{}",
            reply.pieces().len()
        );
        let transcript = reply.transcript();
        assert!(transcript.starts_with("You said: word word"));
        assert!(transcript.ends_with('…'));
        assert!(transcript.chars().count() <= MAX_ECHO_CHARS + 12);
    }

    /// Every note is audible (well above silence), within a quarter of full scale, and fades
    /// to silence at both ends.
    #[test]
    fn notes_are_audible_and_bounded() {
        for index in 0..5 {
            let samples = note(index);
            assert_eq!(samples.len(), NOTE);
            let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
            let rms = (energy / NOTE as f64).sqrt();
            assert!(rms > 1000.0, "note {index}: rms {rms}");
            assert!(samples.iter().all(|s| s.unsigned_abs() <= 8192));
            assert!(samples[0].unsigned_abs() < 100 && samples[NOTE - 1].unsigned_abs() < 100);
        }
    }
}
