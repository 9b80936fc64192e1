// Audio in and out. `Mic` captures the microphone through the worklet (worklet.mjs) as 24 kHz
// PCM16 chunks; `Player` schedules the assistant's PCM16 deltas back to back on one clock so
// they play without gaps, can be stopped at once, and says how much of an item was heard.

export const RATE = 24000;

export function bytesToBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function base64ToInt16(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length & ~1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Int16Array(bytes.buffer);
}

export class Mic {
  // onChunk(Int16Array) for every 100 ms of audio; onLevel(peak 0..1).
  constructor(onChunk, onLevel) {
    this.onChunk = onChunk;
    this.onLevel = onLevel;
    this.ctx = null;
    this.stream = null;
    // Bumped by stop(), so a start still waiting for the device or the worklet gives up.
    this.generation = 0;
  }

  async start() {
    if (this.ctx) return;
    const generation = ++this.generation;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    if (generation !== this.generation) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    this.stream = stream;
    const ctx = new AudioContext();
    this.ctx = ctx;
    await ctx.audioWorklet.addModule('/console/worklet.mjs');
    if (generation !== this.generation) return;
    const node = new AudioWorkletNode(ctx, 'relay-capture', {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: 'explicit',
    });
    node.port.onmessage = (e) => {
      this.onLevel(e.data.peak);
      this.onChunk(new Int16Array(e.data.pcm));
    };
    ctx.createMediaStreamSource(this.stream).connect(node);
    if (ctx.state === 'suspended') await ctx.resume();
  }

  stop() {
    this.generation += 1;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close();
    this.ctx = null;
    this.stream = null;
    this.onLevel(0);
  }
}

export class Player {
  constructor(stats) {
    this.stats = stats;
    this.ctx = null;
    this.sources = new Set();
    this.nextTime = 0;
    // The item being played: its id, content index, when its first sample started, and how
    // many of its samples were scheduled.
    this.item = null;
  }

  // Must first be called from a user gesture, so the context is allowed to run.
  ensure() {
    if (!this.ctx) this.ctx = new AudioContext({ sampleRate: RATE });
    if (this.ctx.state === 'suspended') this.ctx.resume();
  }

  play(itemId, contentIndex, b64) {
    this.ensure();
    const pcm = base64ToInt16(b64);
    if (pcm.length === 0) return;
    const buf = this.ctx.createBuffer(1, pcm.length, RATE);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 0x8000;
    const src = this.ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.ctx.destination);
    // A small lead on an idle clock, then each chunk starts where the previous one ends.
    const now = this.ctx.currentTime;
    const at = Math.max(now + 0.05, this.nextTime);
    if (!this.item || this.item.id !== itemId) {
      this.item = { id: itemId, contentIndex, start: at, samples: 0 };
    } else if (at > this.nextTime + 0.005) {
      // The answer's previous chunk already ended: a gap heard in the middle of the answer.
      this.stats.playbackGaps += 1;
    }
    this.item.samples += pcm.length;
    src.start(at);
    this.nextTime = at + buf.duration;
    this.sources.add(src);
    src.onended = () => this.sources.delete(src);
    this.stats.samplesScheduled += pcm.length;
  }

  get playing() {
    return !!this.ctx && this.sources.size > 0;
  }

  // Stops everything at once. Returns what was playing and how many ms of it were heard, or
  // null when nothing was.
  stop() {
    if (!this.playing || !this.item) {
      this.item = null;
      return null;
    }
    const heardSec = Math.max(0, this.ctx.currentTime - this.item.start);
    const ms = Math.min(Math.floor(heardSec * 1000), Math.floor((this.item.samples * 1000) / RATE));
    const cut = { itemId: this.item.id, contentIndex: this.item.contentIndex, audioEndMs: ms };
    for (const s of this.sources) {
      try { s.stop(); } catch (_) { /* already ended */ }
    }
    this.sources.clear();
    this.nextTime = 0;
    this.item = null;
    this.stats.playbackCuts += 1;
    return cut;
  }

  close() {
    this.stop();
    if (this.ctx) this.ctx.close();
    this.ctx = null;
  }
}
