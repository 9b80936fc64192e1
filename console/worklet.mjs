// The microphone's AudioWorklet: resamples whatever rate the device runs at to 24 kHz mono
// PCM16 (what the Realtime API takes), and posts it in 100 ms chunks together with the chunk's
// peak level, for the meter. Runs on the audio thread; app.mjs turns each chunk into one
// input_audio_buffer.append.

const TARGET_RATE = 24000;
const CHUNK = 2400;

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    // How far into the input one output sample steps, and where the next one falls.
    this.step = sampleRate / TARGET_RATE;
    this.pos = 0;
    this.last = 0;
    this.out = new Int16Array(CHUNK);
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    // Linear interpolation between the previous block's last sample and this block's samples;
    // `pos` is measured from that previous sample (index -1 of this block).
    let pos = this.pos;
    while (pos < channel.length) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i === 0 ? this.last : channel[i - 1];
      const b = channel[i] !== undefined ? channel[i] : a;
      const s = Math.max(-1, Math.min(1, a + (b - a) * frac));
      this.peak = Math.max(this.peak, Math.abs(s));
      this.out[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === CHUNK) {
        this.port.postMessage({ pcm: this.out.buffer, peak: this.peak }, [this.out.buffer]);
        this.out = new Int16Array(CHUNK);
        this.filled = 0;
        this.peak = 0;
      }
      pos += this.step;
    }
    this.pos = pos - channel.length;
    this.last = channel[channel.length - 1];
    return true;
  }
}

registerProcessor('relay-capture', Capture);
