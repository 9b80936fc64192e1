//! PCM16 audio as the Realtime API carries it in JSON: little-endian 16-bit mono samples at
//! 24 kHz, base64-encoded. The demo's ear decodes what clients append and its voice encodes what
//! it says; written out here (about forty lines) rather than adding a dependency to the fake.

/// Samples per second of `audio/pcm`, in and out.
pub(super) const RATE: u64 = 24_000;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (standard alphabet, padded) of `samples` as PCM16 little-endian.
pub(super) fn encode(samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Turns base64 PCM16 into samples, one `input_audio_buffer.append` at a time. A chunk with an
/// odd number of bytes leaves its last byte for the next chunk, so nothing grows but one byte.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    odd: Option<u8>,
}

impl Decoder {
    /// Decodes `base64`, handing each whole sample to `each`. Characters outside the alphabet
    /// (padding, whitespace, garbage) are skipped: the fake listens, it does not validate.
    pub(super) fn feed(&mut self, base64: &str, mut each: impl FnMut(i16)) {
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in base64.bytes() {
            let Some(v) = sextet(c) else { continue };
            acc = ((acc << 6) | v) & 0xFFF;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                let byte = (acc >> bits) as u8;
                match self.odd.take() {
                    None => self.odd = Some(byte),
                    Some(low) => each(i16::from_le_bytes([low, byte])),
                }
            }
        }
    }
}

fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Vec<i16> {
        let mut out = Vec::new();
        Decoder::default().feed(text, |s| out.push(s));
        out
    }

    /// Encoding then decoding gives the samples back, whatever the length modulo three bytes.
    #[test]
    fn round_trip() {
        for n in 0..7 {
            let samples: Vec<i16> = (0..n).map(|i: i32| (i * 9001 - 27_000) as i16).collect();
            assert_eq!(decode(&encode(&samples)), samples, "{n} samples");
        }
        assert_eq!(encode(&[0]), "AAA=");
        assert_eq!(encode(&[1, -1]), "AQD//w==");
    }

    /// A sample split across two appends (three bytes, then one) is decoded whole.
    #[test]
    fn odd_chunks_carry_a_byte() {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        decoder.feed("AQD/", |s| out.push(s));
        assert_eq!(out, [1]);
        decoder.feed("fw==", |s| out.push(s));
        assert_eq!(out, [1, 0x7FFF]);
    }
}
