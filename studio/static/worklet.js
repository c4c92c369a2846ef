// The live stream's player, on the audio thread: a ring of received samples, played once `target` samples are
// buffered (starting from the newest `target`, so what piled up while the page set up audio is skipped). Counts
// underruns (a render quantum that found too few samples: silence, then buffer again, 10 ms deeper) and drops the oldest samples
// beyond `max`, so the latency never creeps. Reports underruns and the buffer depth every 8 quanta (23 ms).
class StreamPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.ring = new Float32Array(1 << 17);
    this.mask = this.ring.length - 1;
    this.read = 0; this.write = 0;
    this.target = o.target; this.max = o.max;
    this.playing = false; this.underruns = 0; this.dropped = 0; this.quanta = 0;
    this.port.onmessage = (e) => {
      const d = e.data;
      if (d.pcm) {
        const pcm = d.pcm;
        for (let i = 0; i < pcm.length; i++) this.ring[(this.write + i) & this.mask] = pcm[i];
        this.write += pcm.length;
        const count = this.write - this.read;
        if (count > this.max) { this.dropped += count - this.target; this.read = this.write - this.target; }
      }
    };
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    const count = this.write - this.read;
    if (!this.playing && count >= this.target) { this.playing = true; this.read = this.write - this.target; }
    if (this.playing && count >= n) {
      for (let i = 0; i < n; i++) out[i] = this.ring[(this.read + i) & this.mask];
      this.read += n;
    } else {
      out.fill(0);
      if (this.playing) {  // starved: count it, and keep 10 ms more from now on (up to max/2)
        this.underruns++; this.playing = false;
        this.target = Math.min(this.target + Math.round(0.01 * sampleRate), Math.round(this.max / 2));
      }
    }
    if (++this.quanta % 8 === 0) {
      this.port.postMessage({ underruns: this.underruns, dropped: this.dropped, target: this.target / sampleRate,
                              buffered: (this.write - this.read) / sampleRate, playing: this.playing });
    }
    return true;
  }
}
registerProcessor("stream-player", StreamPlayer);
