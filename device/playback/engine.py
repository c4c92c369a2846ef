"""The engine: generator -> streaming vocoder -> gain, fades, volume cap, soft limiter -> a sink, forever.

One producer thread computes blocks ahead into a small ring of preallocated samples; the sink pulls from it (a
PyAudio callback only copies ready samples and counts underruns, filling silence whose edges fade). ``render`` runs
the same ``BlockPipeline`` synchronously for offline renders. A control change reaches the sound after the ring's lead
(``buffer_frames``) plus the pipeline's own delay (the vocoder's look-ahead); the figures: BENCHMARKS.md,
"Engine".

``swap_bundle`` crossfades the old generator into the new one in the magnitude domain through the same vocoder
(phase and overlap-add stay continuous: no gap, no click); it needs the same sample rate, n_fft and hop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from murmur.device.bundle import AudioSpec, Bundle
from murmur.device.controls.values import Controls, ControlStore
from murmur.device.errors import BundleError
from murmur.device.generate.bank import BankSampler, BankSettings
from murmur.device.generate.sampler import Sampler
from murmur.device.protocols import EngineStats, Sink, StepModelLike, VocoderLike

log = logging.getLogger(__name__)

ModelFactory = Callable[[Bundle], StepModelLike]  # opens a bundle's step model (default: the TFLite runtime)
VocoderFactory = Callable[[Bundle], VocoderLike]  # a vocoder at the bundle's STFT settings

FADE_IN_S = 0.05  # fade at start (the vocoder has been pre-rolled, so sound starts at once)
STOP_FADE_S = 0.05  # fade before the sink stops
LEVEL_WINDOW_S = 10.0  # stats: RMS window
DEFAULT_BUFFER_FRAMES = 3  # ring lead: 35 ms at 44.1 kHz / hop 512 (grows after underruns)
BUFFER_DECAY_S = 300.0  # the ring lead shrinks back one frame after this long without underruns
LOAD_WINDOW_S = 10.0  # stats: the producer's CPU time per frame is averaged over this long
# [playback] vocoder = "auto": the live engine switches the vocoder to "light" once its frames take more than this
# share of one CPU core (a small or throttled board), keeping headroom for the rest of the system.
AUTO_LIGHT_LOAD = 1.0 / 3.0
DROPOUT_FADE_S = 0.005  # an underrun's edges: the sound fades out into it and in after it (no click)
LIMITER_KNEE = 0.7  # soft limiter: identity below knee * ceiling, tanh above, never reaching the ceiling


def same_stft(a: AudioSpec, b: AudioSpec) -> bool:
    """Whether the engine can crossfade between bundles of these settings (same sample rate, n_fft and hop)."""
    return (a.sample_rate_hz, a.n_fft, a.hop_length) == (b.sample_rate_hz, b.n_fft, b.hop_length)


def db_to_linear(db: float) -> float:
    return 10.0 ** (db / 20.0)


def default_vocoder_factory(bundle: Bundle) -> VocoderLike:
    """The real streaming vocoder at the bundle's STFT settings."""
    return preset_vocoder_factory("full")(bundle)


def preset_vocoder_factory(preset: str) -> VocoderFactory:
    """The real streaming vocoder with a named schedule of passes (``[playback] vocoder``: "full", "light", or
    "auto", which starts as "full": a live ``Engine`` given ``vocoder_auto_load`` switches it when it must)."""
    from murmur.device.dsp.vocoder import PRESETS, StreamingVocoder

    if preset not in PRESETS and preset != "auto":
        raise ValueError(f"vocoder preset {preset!r} is not one of 'auto', {', '.join(map(repr, PRESETS))}")
    passes = PRESETS.get(preset)

    def make(bundle: Bundle) -> VocoderLike:
        spec = bundle.audio
        return StreamingVocoder(n_fft=spec.n_fft, hop_length=spec.hop_length, window=spec.window, passes=passes)

    return make


def default_model_factory(bundle: Bundle):
    """The bundle's TFLite step model, checked by a test step (BundleError if it cannot run)."""
    from murmur.device.generate.step_model import open_step_model

    return open_step_model(bundle)


class Ring:
    """Single-producer single-consumer sample ring; the consumer never blocks (unless it asks to wait)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data = np.zeros(capacity, dtype=np.float32)
        self.written = 0  # total samples written (producer only)
        self.read = 0  # total samples read (consumer only)
        self.space = threading.Event()  # set by the consumer after reading
        self.filled = threading.Event()  # set by the producer after writing

    def free(self) -> int:
        return self.capacity - (self.written - self.read)

    def lead(self) -> int:
        """Samples written and not yet read."""
        return self.written - self.read

    def write(self, block: np.ndarray) -> None:
        """Append (n,) samples; the caller made sure ``free() >= n``; capacity is a multiple of n (no wrap)."""
        start = self.written % self.capacity
        self.data[start : start + block.shape[0]] = block
        self.written += block.shape[0]
        self.filled.set()

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to len(out) ready samples into out (zero-filling the rest); returns how many were ready."""
        n = out.shape[0]
        ready = min(self.written - self.read, n)
        if ready > 0:
            start = self.read % self.capacity
            first = min(ready, self.capacity - start)
            out[:first] = self.data[start : start + first]
            if ready > first:
                out[first:ready] = self.data[: ready - first]
            self.read += ready
            self.space.set()
        if ready < n:
            out[ready:] = 0.0
        return ready


class DropoutSmoother:
    """Softens a dropout of the real-time stream, which would otherwise click: where the ring runs dry, the sound
    goes on as its own mirror image (continuous at the cut) fading to silence over ``fade`` samples, and the first
    samples after the gap fade in. The dropout is still a dropout (and still counted); only its edges are smooth.
    Allocates no sample memory per call. ``fade_s=0`` leaves the pulls as they are."""

    def __init__(self, block: int, sample_rate_hz: int, fade_s: float = DROPOUT_FADE_S) -> None:
        self.fade = max(0, min(block, round(fade_s * sample_rate_hz)))
        self.steps = np.arange(1, self.fade + 1, dtype=np.float32)  # 1 .. fade
        self.ramp = np.empty(self.fade, dtype=np.float32)  # this call's ramp (its length depends on the gap)
        self.last = np.zeros(self.fade, dtype=np.float32)  # the last ``fade`` samples delivered before now
        self.in_gap = False

    def _make_ramp(self, n: int, *, down: bool) -> np.ndarray:
        """(n,) ramp, in place: 1 - k/(n+1) (down) or k/(n+1) (up) for k = 1..n, so neither end reaches a step."""
        ramp = self.ramp[:n]
        np.multiply(self.steps[:n], 1.0 / (n + 1), out=ramp)
        if down:
            np.subtract(1.0, ramp, out=ramp)
        return ramp

    def _remember(self, samples: np.ndarray) -> None:
        """Keep the last ``fade`` samples delivered, ``samples`` (k,) being the newest."""
        k, f = samples.shape[0], self.fade
        if k >= f:
            self.last[:] = samples[k - f:]
        else:  # a pull shorter than the fade (or a cut early in one): shift the rest along
            self.last[: f - k] = self.last[k:]  # (overlapping: numpy copies through a buffer)
            self.last[f - k:] = samples

    def smooth(self, out: np.ndarray, ready: int) -> None:
        """``out`` (n,) float32 holds ``ready`` samples from the ring and silence after them: edit it in place."""
        n, f = out.shape[0], self.fade
        if f == 0:
            return
        if ready > 0 and self.in_gap:  # back from a gap: fade in
            h = min(ready, f)
            out[:h] *= self._make_ramp(h, down=False)
            self.in_gap = False
        if ready == n:
            self._remember(out)
            return
        if self.in_gap:
            return  # still dry: silence
        if ready >= f:
            before = out[ready - f:ready]
        else:  # the cut is early in this pull: what came before it is partly from the last pull
            self._remember(out[:ready])
            before = self.last
        g = min(n - ready, f)
        np.multiply(before[::-1][:g], self._make_ramp(g, down=True), out=out[ready:ready + g])
        self.in_gap = True


GENERATORS = ("auto", "bank", "regression", "bank-no-model")


def make_sampler(bundle: Bundle, model, *, seed: int | None, controls: Controls, generator: str = "auto"):
    """The generator for ``bundle``: the frame bank (format 2) or the regression sampler (format 1).

    ``generator`` overrides the choice for comparisons: "regression" plays the model's own output even when the
    bundle has a bank; "bank-no-model" picks cuts near the current frame instead of the LSTM's prediction.
    """
    if generator not in GENERATORS:
        raise ValueError(f"generator {generator!r}: choose one of {', '.join(GENERATORS)}")
    if generator == "regression" or (generator == "auto" and bundle.bank is None):
        return Sampler(bundle, model, seed=seed, controls=controls)
    if bundle.bank is None:
        raise BundleError(f"{bundle.path}: a format-{bundle.format_version} bundle has no frame bank, so generator "
                          f"{generator!r} cannot play it; retrain it with `make train` (or use generator 'auto')")
    settings = BankSettings(proposer="current") if generator == "bank-no-model" else None
    return BankSampler(bundle, model, seed=seed, controls=controls, settings=settings)


class _Voice:
    """One bundle's generator: its step model and sampler."""

    def __init__(self, bundle: Bundle, model: StepModelLike, seed: int | None, controls: Controls,
                 generator: str = "auto"):
        self.bundle = bundle
        self.model = model
        self.sampler = make_sampler(bundle, model, seed=seed, controls=controls, generator=generator)


class BlockPipeline:
    """Frame by frame: controls -> magnitudes (one voice, or two while swapping) -> vocoder -> gain -> limiter.

    ``next_block(controls)`` returns (hop_length,) float32, a buffer reused by the next call. Used by the engine's
    producer and by ``render``; allocates nothing per frame (except in the vocoder, which is not ours).
    Gain = ``controls.gain_db`` capped at ``volume_cap_db``, times the fade gain, ramped per sample; the soft
    limiter then keeps every sample below min(``volume_cap_db``, 0 dBFS).
    """

    def __init__(self, bundle: Bundle, *, seed: int | None = None, volume_cap_db: float = 0.0,
                 controls: Controls | None = None, model_factory: ModelFactory | None = None,
                 vocoder_factory: VocoderFactory | None = None, preroll: bool = True,
                 generator: str = "auto"):
        self.model_factory = model_factory or default_model_factory
        self.vocoder_factory = vocoder_factory or default_vocoder_factory
        self.seed = seed
        self.generator = generator
        controls = controls or Controls()
        self.voice = _Voice(bundle, self.model_factory(bundle), seed, controls, generator)
        self.incoming: _Voice | None = None
        self.audio = bundle.audio
        self.hop = bundle.audio.hop_length
        self.frame_s = bundle.audio.frame_s
        self.vocoder = self.vocoder_factory(bundle)
        self.volume_cap_db = float(volume_cap_db)
        self.ceiling = min(db_to_linear(self.volume_cap_db), 1.0) * 0.999  # the limiter never reaches this
        n_bins = bundle.audio.n_bins
        self._mix = np.zeros(n_bins, dtype=np.float32)
        self._mix_new = np.zeros(n_bins, dtype=np.float32)
        self._block = np.zeros(self.hop, dtype=np.float32)
        self._scratch = np.zeros(self.hop, dtype=np.float32)
        self._ramp = (np.arange(1, self.hop + 1, dtype=np.float32) / np.float32(self.hop))
        self._scratch2 = np.zeros(self.hop, dtype=np.float32)
        self._gain = 0.0  # gain applied at the end of the previous block (linear)
        # (from gain, to gain, start frame, length in frames): one tuple, replaced whole (other threads write it)
        self._fade = (0.0, 1.0, 0, max(1, round(FADE_IN_S / self.frame_s))) if preroll else (1.0, 1.0, 0, 1)
        self._pending: tuple[_Voice, float] | None = None
        self._swap_frames = 1
        self._swap_pos = 0
        self.frame_index = 0
        self.nonfinite_frames = 0
        self.reseeds = 0  # reseed events taken (a knob's "reseed" press): shown in the status report
        if preroll:  # fill the vocoder's look-ahead so the first block already sounds
            for _ in range(math.ceil(self.vocoder.latency_samples / self.hop)):
                self.vocoder.process(self.voice.sampler.next_frame(controls))

    @property
    def bundle(self) -> Bundle:
        return self.voice.bundle

    # -- scheduling (any thread: each writes one tuple/reference the producer reads) --------------------------
    def fade_to(self, gain_linear: float, seconds: float) -> None:
        """Ramp the fade gain from where it is now to ``gain_linear`` over ``seconds`` (linear in amplitude)."""
        start = self.frame_index
        self._fade = (self.fade_gain(start), float(gain_linear), start, max(1, round(seconds / self.frame_s)))

    def fade_gain(self, frame_index: int) -> float:
        begin, end, start, length = self._fade
        progress = min(max((frame_index - start) / length, 0.0), 1.0)
        return begin + (end - begin) * progress

    def fade_target(self) -> float:
        """The gain the current fade ends at."""
        return self._fade[1]

    def fade_from_silence(self, gain_linear: float, seconds: float) -> None:
        """Start a fade at 0 now, up to ``gain_linear`` over ``seconds`` (after a restart or a recovery)."""
        self._fade = (0.0, float(gain_linear), self.frame_index, max(1, round(seconds / self.frame_s)))

    def fade_start_frame(self) -> int:
        """Frames produced before the current fade began (blocks [0, this) were not touched by it)."""
        return self._fade[2]

    def fade_done_frame(self) -> int:
        return self._fade[2] + self._fade[3]

    def prepare_voice(self, bundle: Bundle, controls: Controls) -> _Voice:
        """Open and check a new bundle's generator (raises BundleError before anything changes)."""
        old, new = self.audio, bundle.audio
        if not same_stft(old, new):
            raise BundleError(
                f"{bundle.path}: sample rate/n_fft/hop {new.sample_rate_hz}/{new.n_fft}/{new.hop_length} differ from "
                f"the playing bundle's {old.sample_rate_hz}/{old.n_fft}/{old.hop_length}; a seamless swap needs the "
                "same STFT settings: stop and start playback with the new bundle instead"
            )
        return _Voice(bundle, self.model_factory(bundle), self.seed, controls, self.generator)

    def start_swap(self, voice: _Voice, crossfade_s: float) -> None:
        """Crossfade to ``voice`` over ``crossfade_s``; if a swap is under way, this one follows it."""
        if self.incoming is not None:
            self._pending = (voice, crossfade_s)
            return
        self._swap_frames = max(1, round(crossfade_s / self.frame_s))
        self._swap_pos = 0
        self.incoming = voice

    # -- the per-frame call -----------------------------------------------------------------------------------
    def next_block(self, controls: Controls, events: tuple[str, ...] = ()) -> np.ndarray:
        for event in events:  # the generator's own (controls.GENERATOR_EVENTS)
            if event == "reseed":
                self.voice.sampler.request_jump()
                self.reseeds += 1
        magnitudes = self.voice.sampler.next_frame(controls)
        incoming = self.incoming
        if incoming is not None:
            self._swap_pos += 1
            weight = 0.5 - 0.5 * math.cos(math.pi * min(self._swap_pos / self._swap_frames, 1.0))
            new_magnitudes = incoming.sampler.next_frame(controls)
            np.multiply(magnitudes, np.float32(1.0 - weight), out=self._mix)
            np.multiply(new_magnitudes, np.float32(weight), out=self._mix_new)
            np.add(self._mix, self._mix_new, out=self._mix)
            magnitudes = self._mix
            if self._swap_pos >= self._swap_frames:
                self.voice, self.incoming = incoming, None
                log.info("engine: now playing bundle %s", incoming.bundle.bundle_id)
                if self._pending is not None:
                    pending, self._pending = self._pending, None
                    self.start_swap(*pending)
        audio = self.vocoder.process(magnitudes)
        block = self._block
        np.copyto(block, audio)
        self.frame_index += 1
        if not math.isfinite(float(np.dot(block, block))):  # NaN/inf anywhere makes this non-finite
            self._recover()
        target = db_to_linear(min(controls.gain_db, self.volume_cap_db)) * self.fade_gain(self.frame_index)
        previous = self._gain
        if target == previous:
            if target != 1.0:
                block *= np.float32(target)
        else:  # per-sample linear ramp from the last block's gain: no zipper clicks
            np.multiply(self._ramp, np.float32(target - previous), out=self._scratch)
            self._scratch += np.float32(previous)
            block *= self._scratch
            self._gain = target
        self._limit(block)
        return block

    def _limit(self, block: np.ndarray) -> None:
        """Soft limiter: samples above knee*ceiling bend smoothly (tanh) toward the ceiling; never a hard clip."""
        knee = np.float32(LIMITER_KNEE * self.ceiling)
        magnitude = self._scratch
        if float(np.max(np.abs(block, out=magnitude))) <= knee:
            return
        span = np.float32(self.ceiling) - knee
        over = self._scratch2
        # |y| = min(|x|, knee) + span * tanh(max(|x| - knee, 0) / span): identity below the knee, smooth above
        np.subtract(magnitude, knee, out=over)
        np.maximum(over, 0.0, out=over)
        np.divide(over, span, out=over)
        np.tanh(over, out=over)
        np.multiply(over, span, out=over)
        np.minimum(magnitude, knee, out=magnitude)
        np.add(over, magnitude, out=over)
        np.copysign(over, block, out=block)

    def _recover(self) -> None:
        """NaN/inf in the audio: silence this block, restart the vocoder and re-seed the generator."""
        self.nonfinite_frames += 1
        log.error("engine: non-finite audio at frame %d; restarting the vocoder and re-seeding", self.frame_index)
        self._block.fill(0.0)
        self.vocoder.reset()
        self.voice.model.reset()
        self.voice.sampler.reset()
        self._gain = 0.0
        self.fade_from_silence(self.fade_target(), FADE_IN_S)


def _as_store(controls: Controls | ControlStore | None) -> ControlStore:
    if isinstance(controls, ControlStore):
        return controls
    return ControlStore(controls)


def render(bundle: Bundle, seconds: float, *, controls: Controls | ControlStore | None = None, seed: int | None = None,
           volume_cap_db: float = 0.0, on_frame: Callable[[int], None] | None = None,
           model_factory: ModelFactory | None = None, vocoder_factory: VocoderFactory | None = None,
           generator: str = "auto") -> np.ndarray:
    """Render ``seconds`` of the bundle offline, synchronously, with the engine's pipeline -> (n_samples,) float32.

    ``controls`` is fixed Controls or a ControlStore read once per frame (``on_frame(i)`` runs before frame i,
    so a test can move a knob at an exact frame).
    """
    out = np.empty(render_samples(bundle, seconds), dtype=np.float32)
    at = 0
    for block in render_blocks(bundle, seconds, controls=controls, seed=seed, volume_cap_db=volume_cap_db,
                               on_frame=on_frame, model_factory=model_factory, vocoder_factory=vocoder_factory,
                               generator=generator):
        out[at : at + block.shape[0]] = block
        at += block.shape[0]
    return out


def render_samples(bundle: Bundle, seconds: float) -> int:
    """How many samples ``render(bundle, seconds)`` returns."""
    if not seconds > 0:
        raise ValueError(f"seconds={seconds!r} must be > 0")
    return int(round(seconds * bundle.audio.sample_rate_hz))


def render_blocks(bundle: Bundle, seconds: float, *, controls: Controls | ControlStore | None = None,
                  seed: int | None = None, volume_cap_db: float = 0.0, on_frame: Callable[[int], None] | None = None,
                  model_factory: ModelFactory | None = None, vocoder_factory: VocoderFactory | None = None,
                  generator: str = "auto") -> Iterator[np.ndarray]:
    """``render``, one hop at a time: (hop,) float32 blocks (the last cut to the length), each valid until the next
    is asked for. An hour is 635 MB as one array; ``make render`` streams the blocks into the WAV file instead."""
    n_samples = render_samples(bundle, seconds)
    store = _as_store(controls)
    pipeline = BlockPipeline(bundle, seed=seed, volume_cap_db=volume_cap_db, controls=store.snapshot(),
                             model_factory=model_factory, vocoder_factory=vocoder_factory, generator=generator)
    hop = pipeline.hop
    for i in range(math.ceil(n_samples / hop)):
        if on_frame is not None:
            on_frame(i)
        block = pipeline.next_block(store.snapshot(), store.take_events())
        yield block if (i + 1) * hop <= n_samples else block[: n_samples - i * hop]


class Engine:
    """Live playback: a producer thread keeps ``buffer_frames`` blocks ready; the sink pulls them.

    ``buffer_frames`` (3 = 35 ms at 44.1 kHz / hop 512) keeps a control change within 100 ms. After an underrun
    the lead grows by one frame (up to ``max_buffer_frames``, logged): on a starved machine, sound without gaps
    beats latency; it shrinks back one frame per ``BUFFER_DECAY_S`` without underruns. An underrun's edges fade
    over ``dropout_fade_s`` (``DropoutSmoother``: a gap, not a click; 0 = exact samples, for transport tests).

    ``sink`` has ``realtime`` (bool), ``start(pull, *, sample_rate_hz, block_frames)`` and ``stop()``; it calls
    ``pull(out (n,) float32) -> bool`` (False once the engine has stopped). ``on_frame(i)`` runs in the producer
    after every frame (keep it cheap). Of the store's one-shot events the engine takes only the generator's
    (``reseed``); the playlist actions are the service's (``ControlStore.take_service_events``).

    The producer's CPU time per frame, as a share of the frame's duration, is ``stats.cpu_load`` (averaged over
    ``LOAD_WINDOW_S``); with ``vocoder_auto_load`` set, the vocoder goes "light" once that share exceeds it.
    """

    def __init__(self, bundle: Bundle, *, sink: Sink, controls: ControlStore | None = None, seed: int | None = None,
                 volume_cap_db: float = 0.0, on_frame: Callable[[int], None] | None = None,
                 buffer_frames: int = DEFAULT_BUFFER_FRAMES, max_buffer_frames: int = 12,
                 dropout_fade_s: float = DROPOUT_FADE_S,
                 model_factory: ModelFactory | None = None, vocoder_factory: VocoderFactory | None = None,
                 vocoder_auto_load: float | None = None, load_window_s: float = LOAD_WINDOW_S):
        self.sink = sink
        self.controls = controls if controls is not None else ControlStore()
        self.on_frame = on_frame
        self.pipeline = BlockPipeline(bundle, seed=seed, volume_cap_db=volume_cap_db,
                                      controls=self.controls.snapshot(), model_factory=model_factory,
                                      vocoder_factory=vocoder_factory)
        self.hop = self.pipeline.hop
        self.sample_rate_hz = bundle.audio.sample_rate_hz
        self.min_buffer_frames = self.buffer_frames = max(1, int(buffer_frames))
        self.max_buffer_frames = max(self.buffer_frames, int(max_buffer_frames))
        self.ring = Ring(self.max_buffer_frames * self.hop)
        n_level = max(1, round(LEVEL_WINDOW_S / self.pipeline.frame_s))
        self._block_power = np.zeros(n_level, dtype=np.float64)
        self._block_peak = np.zeros(n_level, dtype=np.float32)
        self._previous = np.zeros(self.hop, dtype=np.float32)
        self._same = np.zeros(self.hop, dtype=bool)
        self._smoother = DropoutSmoother(self.hop, self.sample_rate_hz, dropout_fade_s)
        self._identical = 0
        self._underruns = 0
        self._pulls = 0
        self._blocks_delivered = 0
        self._samples_delivered = 0
        self._lock = threading.Lock()  # swap/fade scheduling against each other (never taken per frame)
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._last_progress = time.monotonic()
        self._running = False
        self._resume_gain: float | None = None
        self.vocoder_auto_load = vocoder_auto_load
        self._load_window = max(1, round(load_window_s / self.pipeline.frame_s))
        self._cpu_load = 0.0
        self._auto_light = False

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the producer, wait until the ring is full, then start the sink."""
        if self._running:
            return
        self._stop.clear()
        if self._resume_gain is not None:  # a restart: come back from the stop fade to where it was
            self.pipeline.fade_from_silence(self._resume_gain, FADE_IN_S)
            self._resume_gain = None
        self._running = True
        self._thread = threading.Thread(target=self._produce, name="murmur-producer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while self.ring.lead() < self.buffer_frames * self.hop and self._thread.is_alive() and time.monotonic() < deadline:
            self.ring.filled.wait(0.05)
            self.ring.filled.clear()
        try:
            if self._error is not None:
                raise self._error
            pull = self._pull_nowait if self.sink.realtime else self._pull_wait
            self.sink.start(pull, sample_rate_hz=self.sample_rate_hz, block_frames=self.hop)
        except BaseException:  # e.g. OutputDeviceError: leave nothing running
            self._stop.set()
            self.ring.space.set()
            self._thread.join(timeout=5.0)
            self._running = False
            raise

    def wait_started(self, timeout: float | None = None) -> bool:
        """True once the first audio block has reached the sink."""
        return self._started.wait(timeout)

    def stop(self, fade_s: float = STOP_FADE_S) -> None:
        """Fade out, let the sink play the fade, stop the sink and the producer (idempotent)."""
        if not self._running:
            return
        if fade_s > 0 and self._thread is not None and self._thread.is_alive() and self._started.is_set():
            self._resume_gain = self.pipeline.fade_target()
            self.fade_to(0.0, fade_s)
            done_sample = (self.pipeline.fade_done_frame() + self.buffer_frames) * self.hop
            deadline = time.monotonic() + fade_s + 1.0 + self.buffer_frames * self.pipeline.frame_s
            while self.ring.read < done_sample and time.monotonic() < deadline and self._thread.is_alive():
                self.ring.space.wait(0.02)
                self.ring.space.clear()
        self._stop.set()
        self.ring.space.set()
        self.ring.filled.set()
        try:
            self.sink.stop()
        finally:
            if self._thread is not None:
                self._thread.join(timeout=5.0)
            self._running = False

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- control from other threads ---------------------------------------------------------------------------
    def fade_to(self, gain_linear: float, seconds: float) -> None:
        """Ramp the output to ``gain_linear`` (0 = silence, 1 = full) over ``seconds``; audible after the ring."""
        with self._lock:
            self.pipeline.fade_to(gain_linear, seconds)

    def swap_bundle(self, bundle: Bundle, crossfade_s: float = 5.0) -> None:
        """Hot reload: open and check ``bundle`` now (BundleError leaves the current one playing), then crossfade."""
        with self._lock:
            voice = self.pipeline.prepare_voice(bundle, self.controls.snapshot())
            self.pipeline.start_swap(voice, crossfade_s)

    @property
    def bundle(self) -> Bundle:
        return self.pipeline.bundle

    @property
    def stats(self) -> EngineStats:
        power = float(self._block_power.mean())
        peak = float(self._block_peak.max())
        return EngineStats(
            frames_produced=self.pipeline.frame_index,
            blocks_delivered=self._blocks_delivered,
            underruns=self._underruns,
            level_dbfs_10s=10.0 * math.log10(power) if power > 0 else -math.inf,
            peak_dbfs_10s=20.0 * math.log10(peak) if peak > 0 else -math.inf,
            identical_blocks=self._identical,
            nonfinite_frames=self.pipeline.nonfinite_frames,
            reseeds=self.pipeline.reseeds,
            bundle_id=self.pipeline.bundle.bundle_id,
            last_progress_monotonic=self._last_progress,
            buffer_frames=self.buffer_frames,
            swapping=self.pipeline.incoming is not None,
            cpu_load=self._cpu_load,
            vocoder=self._vocoder_label(),
        )

    def _vocoder_label(self) -> str:
        """The vocoder's preset by name ("full", "light", "light (auto)"; "" for one without schedules)."""
        from murmur.device.dsp.vocoder import PRESETS, StreamingVocoder

        vocoder = self.pipeline.vocoder
        if not isinstance(vocoder, StreamingVocoder):
            return ""
        if self._auto_light:
            return "light (auto)"
        full = (vocoder.lookahead + 1,) * len(vocoder.passes)
        names = {passes or full: name for name, passes in PRESETS.items()}
        return names.get(vocoder.passes, f"passes {vocoder.passes}")

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the producer, if any."""
        return self._error

    # -- producer ---------------------------------------------------------------------------------------------
    def _publish(self, block: np.ndarray) -> None:
        """The producer's per-block bookkeeping (level, peak, identical blocks) and the block into the ring."""
        slot = self.pipeline.frame_index % self._block_power.shape[0]
        self._block_power[slot] = float(np.dot(block, block)) / self.hop
        self._block_peak[slot] = max(float(block.max()), -float(block.min()))
        if np.equal(block, self._previous, out=self._same).all():
            self._identical += 1
        else:
            np.copyto(self._previous, block)
        self.ring.write(block)
        self._last_progress = time.monotonic()

    def _produce(self) -> None:
        ring, pipeline, controls, hop = self.ring, self.pipeline, self.controls, self.hop
        seen_underruns, quiet_since = self._underruns, time.monotonic()
        clock, window, spent_ns, counted = time.thread_time_ns, self._load_window, 0, 0
        try:
            while not self._stop.is_set():
                if self._underruns != seen_underruns:
                    seen_underruns, quiet_since = self._underruns, time.monotonic()
                    if self.buffer_frames < self.max_buffer_frames:
                        self.buffer_frames += 1
                        log.warning("engine: underrun (%d so far); buffering %d frames (%.0f ms) from now on",
                                    seen_underruns, self.buffer_frames, self.buffer_frames * pipeline.frame_s * 1e3)
                elif self.buffer_frames > self.min_buffer_frames and time.monotonic() - quiet_since > BUFFER_DECAY_S:
                    self.buffer_frames -= 1
                    quiet_since = time.monotonic()
                target = self.buffer_frames * hop
                if ring.lead() >= target:
                    ring.space.clear()
                    if ring.lead() >= target:
                        ring.space.wait(pipeline.frame_s)
                    continue
                started = clock()
                block = pipeline.next_block(controls.snapshot(), controls.take_events())
                spent_ns += clock() - started
                counted += 1
                if counted == window:
                    self._cpu_load = spent_ns / counted / 1e9 / pipeline.frame_s
                    spent_ns = counted = 0
                    if self.vocoder_auto_load is not None and self._cpu_load > self.vocoder_auto_load:
                        self._go_light()
                self._publish(block)
                if self.on_frame is not None:
                    self.on_frame(pipeline.frame_index)
        except BaseException as exc:  # reported through .error and the log; the sink then plays silence
            self._error = exc
            log.exception("engine: producer stopped")
        finally:
            ring.filled.set()

    def _go_light(self) -> None:
        """``vocoder_auto_load`` exceeded: the vocoder's "light" schedule from the next frame on (once)."""
        from murmur.device.dsp.vocoder import PRESETS, StreamingVocoder

        vocoder, self.vocoder_auto_load = self.pipeline.vocoder, None
        if isinstance(vocoder, StreamingVocoder) and PRESETS["light"] is not None:
            vocoder.use_passes(PRESETS["light"])
            self._auto_light = True
            log.warning('engine: the sound took %.0f %% of a CPU core per frame over the last %.0f s: vocoder "light" '
                        'from now on, about 60 %% of its work (set [playback] vocoder = "full" to keep the finest)',
                        100 * self._cpu_load, self._load_window * self.pipeline.frame_s)

    # -- sink side --------------------------------------------------------------------------------------------
    def _pull_nowait(self, out: np.ndarray) -> bool:
        """Real-time pull (audio callback): copy what is ready, silence for the rest (its edges smoothed), count an
        underrun."""
        ready = self.ring.read_into(out)
        self._smoother.smooth(out, ready)
        self._pulls += 1
        # the first pulls may come in a burst (PortAudio priming the card's buffer): not counted as underruns
        if ready < out.shape[0] and not self._stop.is_set() and self._pulls > self.max_buffer_frames:
            self._underruns += 1
        self._delivered(ready)
        return not self._stop.is_set()

    def _pull_wait(self, out: np.ndarray) -> bool:
        """Offline pull (file/null sinks): wait until a whole block is ready; False once stopped."""
        n = out.shape[0]
        while self.ring.written - self.ring.read < n:
            if self._stop.is_set() or (self._thread is not None and not self._thread.is_alive()):
                return False
            self.ring.filled.wait(0.1)
            self.ring.filled.clear()
        self._delivered(self.ring.read_into(out))
        return True

    def _delivered(self, ready: int) -> None:
        if ready > 0:
            self._samples_delivered += ready
            self._blocks_delivered += 1
            if not self._started.is_set():
                self._started.set()
