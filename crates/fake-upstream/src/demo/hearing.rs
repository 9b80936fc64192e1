//! The demo's ear: what a client has appended to its input audio buffer, counted (never kept),
//! and, when the session asks for server VAD, where speech starts and stops judged by its energy.
//! Pure logic on sample counts, no clock: the demo server feeds it each
//! `input_audio_buffer.append` and turns what it reports into events.

use super::pcm::{Decoder, RATE};

/// Samples in one window of the energy detector (20 ms).
const WINDOW: u64 = RATE / 50;

/// A window whose root-mean-square level reaches this much (about -36 dBFS) is speech.
const SPEECH_RMS: u64 = 500;

/// Quiet that ends speech (500 ms, OpenAI's default `silence_duration_ms`).
const SILENCE: u64 = RATE / 2;

/// At most this many changes are reported for one append (a 15 MiB append holds five minutes
/// of audio); later ones in the same append are not reported.
const MAX_CHANGES_PER_APPEND: usize = 8;

/// A change the ear noticed, in samples since the session's first appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heard {
    /// Speech began at this sample.
    SpeechStarted { at: u64 },
    /// Speech ended at sample `at` (where the quiet began) after `samples` of it; the buffer
    /// has been committed.
    SpeechStopped { at: u64, samples: u64 },
}

/// The input audio buffer as counts, and the voice activity detector's state.
#[derive(Debug, Default)]
pub(super) struct Ear {
    decoder: Decoder,
    /// Samples appended since the buffer was last committed or cleared.
    buffered: u64,
    /// Samples appended in the whole session: the clock of `audio_start_ms`/`audio_end_ms`.
    clock: u64,
    /// Sum of squares and length of the window being filled.
    window_energy: u64,
    window_len: u64,
    /// Where the current speech began, while there is speech.
    speech_from: Option<u64>,
    /// Where the current quiet began, while there is speech.
    quiet_from: Option<u64>,
}

impl Ear {
    /// Takes in one append of base64 PCM16. With `vad`, reports where speech started and
    /// stopped in it; without, only counts it (and forgets any speech in progress).
    pub(super) fn hear(&mut self, base64: &str, vad: bool) -> Vec<Heard> {
        if !vad {
            self.speech_from = None;
            self.quiet_from = None;
        }
        let mut changes = Vec::new();
        let mut decoder = std::mem::take(&mut self.decoder);
        decoder.feed(base64, |sample| {
            self.buffered += 1;
            self.clock += 1;
            if !vad {
                return;
            }
            let level = u64::from(sample.unsigned_abs());
            self.window_energy += level * level;
            self.window_len += 1;
            if self.window_len == WINDOW {
                if let Some(change) = self.judge_window() {
                    if changes.len() < MAX_CHANGES_PER_APPEND {
                        changes.push(change);
                    }
                }
            }
        });
        self.decoder = decoder;
        changes
    }

    /// Closes the window that just filled: is it speech, and does that change anything?
    fn judge_window(&mut self) -> Option<Heard> {
        let loud = self.window_energy / WINDOW >= SPEECH_RMS * SPEECH_RMS;
        let start = self.clock - WINDOW;
        self.window_energy = 0;
        self.window_len = 0;
        match (self.speech_from, loud) {
            (None, true) => {
                self.speech_from = Some(start);
                Some(Heard::SpeechStarted { at: start })
            }
            (None, false) => None,
            (Some(_), true) => {
                self.quiet_from = None;
                None
            }
            (Some(from), false) => {
                let quiet_from = *self.quiet_from.get_or_insert(start);
                if self.clock - quiet_from < SILENCE {
                    return None;
                }
                self.speech_from = None;
                self.quiet_from = None;
                self.buffered = 0;
                Some(Heard::SpeechStopped {
                    at: quiet_from,
                    samples: quiet_from - from,
                })
            }
        }
    }

    /// Commits the buffer: how many samples it held. It is empty afterwards, and any speech in
    /// progress is over.
    pub(super) fn commit(&mut self) -> u64 {
        self.speech_from = None;
        self.quiet_from = None;
        std::mem::take(&mut self.buffered)
    }

    /// Empties the buffer and forgets any speech in progress.
    pub(super) fn clear(&mut self) {
        self.buffered = 0;
        self.speech_from = None;
        self.quiet_from = None;
    }
}

/// Milliseconds of audio in `samples`.
pub(super) fn millis(samples: u64) -> u64 {
    samples * 1000 / RATE
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::demo::pcm::encode;

    /// `seconds` of a 440 Hz tone at about a quarter of full scale, or of silence when `level`
    /// is zero, as base64 PCM16.
    pub(crate) fn tone(seconds: f64, level: f64) -> String {
        let n = (seconds * RATE as f64).round() as usize;
        let samples: Vec<i16> = (0..n)
            .map(|i| {
                let t = i as f64 / RATE as f64;
                (level * 8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect();
        encode(&samples)
    }

    /// Without VAD, appends are counted and a commit reports and empties the buffer.
    #[test]
    fn commit_counts_what_was_appended() {
        let mut ear = Ear::default();
        assert!(ear.hear(&tone(0.5, 1.0), false).is_empty());
        assert!(ear.hear(&tone(0.25, 0.0), false).is_empty());
        assert_eq!(ear.commit(), 18_000);
        assert_eq!(ear.commit(), 0);
        ear.hear(&tone(0.1, 1.0), false);
        ear.clear();
        assert_eq!(ear.commit(), 0);
    }

    /// With VAD, a second of tone between quiet stretches starts speech where the tone starts
    /// and stops it after 500 ms of quiet, reporting a second of speech.
    #[test]
    fn vad_finds_a_tone_between_silences() {
        let mut ear = Ear::default();
        assert!(ear.hear(&tone(0.2, 0.0), true).is_empty());
        assert_eq!(
            ear.hear(&tone(1.0, 1.0), true),
            [Heard::SpeechStarted { at: 4_800 }]
        );
        assert!(ear.hear(&tone(0.4, 0.0), true).is_empty());
        assert_eq!(
            ear.hear(&tone(0.2, 0.0), true),
            [Heard::SpeechStopped {
                at: 28_800,
                samples: 24_000
            }]
        );
        // The stop came 100 ms before the end of the last append: those samples start a new buffer.
        assert_eq!(ear.commit(), 2_400);
    }

    /// Silence, and a tone too faint to be speech, start nothing however long they last.
    #[test]
    fn vad_ignores_silence_and_faint_noise() {
        let mut ear = Ear::default();
        assert!(ear.hear(&tone(3.0, 0.0), true).is_empty());
        assert!(ear.hear(&tone(3.0, 0.05), true).is_empty());
        assert_eq!(ear.commit(), 144_000);
    }

    /// One append holding many turns reports no more than the cap.
    #[test]
    fn changes_per_append_are_capped() {
        let turn = [tone(0.2, 1.0), tone(0.6, 0.0)].concat();
        let mut ear = Ear::default();
        // Concatenated base64 of whole 3-byte groups decodes as one stream.
        assert_eq!(turn.len() % 4, 0);
        let many = turn.repeat(20);
        assert_eq!(ear.hear(&many, true).len(), MAX_CHANGES_PER_APPEND);
    }
}
