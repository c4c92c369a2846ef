// The live stream's player, on the audio thread: a ring of received samples, played once `target` samples are
// buffered (starting from the newest `target`, so what piled up while the page set up audio is skipped).
// - Steering: the mean buffer level is held at the target by playing up to 0.5 % faster or slower (linear
//   interpolation), so a sound card whose clock runs a little off the server's neither starves nor piles up.
// - Underrun (a render quantum that found too few samples): count it, buffer again 10 ms deeper (up to max/2);
//   after each 10 s without one the target comes back 2 ms, down to where it started. The gap's edges do not
//   click: the sound goes on into it as its own mirror image fading out over one quantum (2.9 ms), and fades in
//   over one quantum when it comes back.
// - Beyond `max` buffered the oldest samples are dropped (back to the target), so the latency never creeps.
// PlayerCore is the logic (plain JavaScript, so the browser test can drive it on the page); StreamPlayer wraps it
// as the AudioWorklet processor and reports underruns and the buffer depth every 8 quanta (23 ms at 44.1 kHz).
// TakeRecorder (at the end) is the other processor here: the microphone's samples for Record in the page.
const MAX_RATE_DEVIATION = 0.005;
const STEER_PER_SECOND = 0.1;  // 10 ms of surplus -> 0.1 % faster
const CALM_S = 10, BACK_S = 0.002, DEEPER_S = 0.01;

class PlayerCore {
  constructor(o, rate) {
    this.sampleRate = rate;
    this.ring = new Float32Array(1 << 17);
    this.mask = this.ring.length - 1;
    this.read = 0; this.write = 0;  // read is fractional (steering), write whole samples
    this.base = o.target; this.target = o.target; this.max = o.max; this.block = o.block || 512;
    this.level = o.target; this.calm = 0; this.rate = 1;
    this.playing = false; this.fadeIn = false; this.underruns = 0; this.dropped = 0;
    this.last = new Float32Array(128);  // the last quantum played: what a gap's fade-out mirrors
  }

  receive(pcm) {
    for (let i = 0; i < pcm.length; i++) this.ring[(this.write + i) & this.mask] = pcm[i];
    this.write += pcm.length;
    const count = this.write - this.read;
    if (count > this.max) { this.dropped += Math.round(count - this.target); this.read = this.write - this.target; }
  }

  render(out) {
    const n = out.length;
    if (this.last.length !== n) this.last = new Float32Array(n);  // (a quantum is 128 samples: once at most)
    let count = this.write - this.read;
    if (!this.playing && count >= this.target) {
      this.playing = true; this.fadeIn = true; this.read = this.write - this.target; count = this.target;
      this.level = count;
    }
    const need = Math.ceil(n * this.rate) + 1;
    if (this.playing && count >= need) {
      const ring = this.ring, mask = this.mask, rate = this.rate;
      let p = this.read;
      for (let i = 0; i < n; i++, p += rate) {
        const j = Math.floor(p), f = p - j;
        const a = ring[j & mask];
        out[i] = a + f * (ring[(j + 1) & mask] - a);
      }
      this.read = p;
      if (this.fadeIn) {
        for (let i = 0; i < n; i++) out[i] *= (i + 1) / (n + 1);
        this.fadeIn = false;
      }
      this.last.set(out);
      // the level's mean sits half a streamed block (less half a quantum) under the level just after a block lands
      this.level += (count - this.level) / 256;
      const surplus = (this.level - (this.target - (this.block - n) / 2)) / this.sampleRate;
      this.rate = 1 + Math.max(-MAX_RATE_DEVIATION, Math.min(MAX_RATE_DEVIATION, STEER_PER_SECOND * surplus));
      this.calm += n;
      if (this.calm >= CALM_S * this.sampleRate && this.target > this.base) {
        this.target = Math.max(this.base, this.target - Math.round(BACK_S * this.sampleRate));
        this.calm = 0;
      }
    } else if (this.playing) {  // starved: fade out the mirror image, count it, keep 10 ms more (up to max/2)
      const last = this.last;
      for (let i = 0; i < n; i++) out[i] = last[n - 1 - i] * (1 - (i + 1) / (n + 1));
      this.underruns++; this.playing = false; this.calm = 0; this.rate = 1;
      this.target = Math.min(this.target + Math.round(DEEPER_S * this.sampleRate), Math.round(this.max / 2));
    } else {
      out.fill(0);
    }
  }
}

if (typeof AudioWorkletProcessor !== "undefined") {
  class StreamPlayer extends AudioWorkletProcessor {
    constructor(options) {
      super();
      this.core = new PlayerCore(options.processorOptions, sampleRate);
      this.quanta = 0;
      this.port.onmessage = (e) => { if (e.data.pcm) this.core.receive(e.data.pcm); };
    }

    process(inputs, outputs) {
      const core = this.core;
      core.render(outputs[0][0]);
      if (++this.quanta % 8 === 0) {
        this.port.postMessage({ underruns: core.underruns, dropped: core.dropped, target: core.target / sampleRate,
                                buffered: (core.write - core.read) / sampleRate, playing: core.playing });
      }
      return true;
    }
  }
  registerProcessor("stream-player", StreamPlayer);

  // The microphone's samples for "Record" in the page: the first input channel, exactly as captured, handed to the
  // page in batches of 2048 samples with their peak (the level meter); the page keeps or drops them.
  class TakeRecorder extends AudioWorkletProcessor {
    constructor() {
      super();
      this.batch = new Float32Array(2048); this.n = 0;
    }

    process(inputs) {
      const input = inputs[0] && inputs[0][0];
      if (!input) return true;
      for (let i = 0; i < input.length; i++) {
        this.batch[this.n++] = input[i];
        if (this.n === this.batch.length) {
          let peak = 0;
          for (const v of this.batch) peak = Math.max(peak, Math.abs(v));
          this.port.postMessage({ samples: this.batch, peak }, [this.batch.buffer]);
          this.batch = new Float32Array(2048); this.n = 0;
        }
      }
      return true;
    }
  }
  registerProcessor("take-recorder", TakeRecorder);
}
