// The transcript (both sides, live, one line per conversation item) and the usage panel (token
// counts and cost summed from every response.done, priced at the rates /console/config gives).

const MAX_LINES = 200;

export class Transcript {
  constructor(list) {
    this.list = list;
    this.lines = new Map();
  }

  // The line for `key` (an item id, or a local key for typed text), made on first use.
  line(key, who) {
    let li = this.lines.get(key);
    if (!li) {
      li = document.createElement('li');
      li.className = who;
      const label = document.createElement('span');
      label.className = 'who';
      label.textContent = who === 'user' ? 'You' : 'Assistant';
      const text = document.createElement('span');
      text.className = 'text';
      li.append(label, text);
      this.list.append(li);
      this.lines.set(key, li);
      while (this.list.childElementCount > MAX_LINES) {
        const first = this.list.firstElementChild;
        for (const [k, v] of this.lines) if (v === first) this.lines.delete(k);
        first.remove();
      }
    }
    return li;
  }

  append(key, who, delta) {
    const li = this.line(key, who);
    li.querySelector('.text').textContent += delta;
    li.scrollIntoView({ block: 'nearest' });
  }

  set(key, who, text) {
    const li = this.line(key, who);
    li.querySelector('.text').textContent = text;
    li.classList.remove('pending');
  }

  pending(key, who) {
    this.line(key, who).classList.add('pending');
  }

  clear() {
    this.list.replaceChildren();
    this.lines.clear();
  }
}

// The counts one response.done reports, split as the price table prices them.
export function splitUsage(u) {
  const inD = u.input_token_details || {};
  const cached = inD.cached_tokens_details || {};
  const outD = u.output_token_details || {};
  const inText = inD.text_tokens || 0;
  const inAudio = inD.audio_tokens || 0;
  const cachedText = Math.min(cached.text_tokens || 0, inText);
  const cachedAudio = Math.min(cached.audio_tokens || 0, inAudio);
  const outText = outD.text_tokens || 0;
  const outAudio = outD.audio_tokens || 0;
  return {
    input: u.input_tokens || 0,
    output: u.output_tokens || 0,
    total: u.total_tokens || 0,
    // Tokens the details do not split are priced as text, as the relay does.
    input_text: inText - cachedText + Math.max(0, (u.input_tokens || 0) - inText - inAudio - (inD.image_tokens || 0)),
    cached_input_text: cachedText,
    input_audio: inAudio - cachedAudio,
    cached_input_audio: cachedAudio,
    output_text: outText + Math.max(0, (u.output_tokens || 0) - outText - outAudio),
    output_audio: outAudio,
  };
}

// The cost of `split` at `rates` (USD per 1M tokens per kind); `unpriced` when a count has no
// rate.
export function price(split, rates) {
  let usd = 0;
  let unpriced = false;
  for (const kind of ['input_text', 'cached_input_text', 'input_audio', 'cached_input_audio', 'output_text', 'output_audio']) {
    if (!split[kind]) continue;
    const rate = rates ? rates[kind] : null;
    if (typeof rate !== 'number') { unpriced = true; continue; }
    usd += (split[kind] * rate) / 1e6;
  }
  return { usd, unpriced };
}

export class Usage {
  constructor(stats, el) {
    this.stats = stats;
    this.el = el;
  }

  add(usage, rates) {
    const split = splitUsage(usage || {});
    const { usd, unpriced } = price(split, rates);
    const t = this.stats.usage;
    t.responses += 1;
    t.input_tokens += split.input;
    t.output_tokens += split.output;
    t.total_tokens += split.total;
    t.cost_usd += usd;
    if (unpriced) t.unpriced += 1;
    this.render();
  }

  render() {
    const t = this.stats.usage;
    this.el.responses.textContent = String(t.responses);
    this.el.input.textContent = String(t.input_tokens);
    this.el.output.textContent = String(t.output_tokens);
    this.el.total.textContent = String(t.total_tokens);
    this.el.cost.textContent = `$${t.cost_usd.toFixed(4)}`;
    this.el.note.textContent = t.unpriced
      ? `${t.unpriced} response(s) had counts the relay's price table does not price; the cost leaves them out.`
      : 'Cost at the relay\'s price table (config/pricing.toml or PRICING_FILE).';
  }
}
