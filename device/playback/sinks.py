"""Where the engine's audio goes: a sound card through PyAudio, a WAV file, or nowhere (benchmarks).

Pull model, so a sound card's callback only copies a block the engine's producer has ready and never waits on the
generator: ``start(pull, *, sample_rate_hz, block_frames)`` hands the sink the engine's
``pull(out (n,) float32) -> bool``; the sink asks for blocks when it wants them. ``realtime`` tells the engine
whether a pull may wait (file sinks) or must return at once with silence on underrun (sound cards).
PyAudio is imported only inside ``PyAudioSink``/``list_output_devices``, so the rest runs without it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from murmur.device.errors import OutputDeviceError

if TYPE_CHECKING:
    from murmur.device.dsp.wavio import WavWriter

log = logging.getLogger(__name__)

Pull = Callable[[np.ndarray], bool]


@dataclass(frozen=True)
class OutputDevice:
    index: int  # PortAudio's index: valid for this process only, never stored
    name: str
    max_output_channels: int
    default_sample_rate_hz: float
    host_api: str
    is_default: bool


class NativeNoise:
    """Counts what alsa-lib, libjack and PortAudio would have printed to stderr while PortAudio probes devices.

    ``PyAudio()`` (Pa_Initialize) opens every ALSA PCM the configuration names and tries to reach a JACK server:
    on a Pi that prints 20-70 lines (``ALSA lib pcm.c:… Unknown PCM cards.pcm.rear``, ``jack server is not
    running or cannot be started``, ``Cannot create thread res = 1``) into the journal at every start, ahead of
    Murmur's own lines and meaning nothing. ``quiet_native_probing()`` installs no-op handlers through each
    library's own hook (``snd_lib_error_set_handler``, ``jack_set_error_function``/``jack_set_info_function``,
    ``PaUtil_SetDebugPrintFunction``), once per process; Murmur's own log lines are untouched."""

    def __init__(self) -> None:
        self.alsa = 0
        self.jack = 0
        self.portaudio = 0
        self.hooks: list[str] = []
        self._keep: list[object] = []  # the ctypes callbacks must live as long as the process

    def total(self) -> int:
        return self.alsa + self.jack + self.portaudio


_noise: NativeNoise | None = None


def quiet_native_probing() -> NativeNoise:
    """Install the no-op stderr handlers (see ``NativeNoise``) once; returns the counters."""
    global _noise
    if _noise is not None:
        return _noise
    import ctypes
    import ctypes.util

    noise = NativeNoise()

    def load(name: str, soname: str):
        try:
            return ctypes.CDLL(ctypes.util.find_library(name) or soname)
        except OSError:
            return None

    asound = load("asound", "libasound.so.2")
    if asound is not None and hasattr(asound, "snd_lib_error_set_handler"):
        # void handler(const char *file, int line, const char *function, int err, const char *fmt, ...): the
        # variadic tail is ignored, which the x86_64 and AArch64 Linux calling conventions allow
        alsa_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)

        def on_alsa(file, line, function, err, fmt):
            noise.alsa += 1

        handler = alsa_type(on_alsa)
        asound.snd_lib_error_set_handler(handler)
        noise._keep.append(handler)
        noise.hooks.append("alsa-lib")
    text_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
    jack = load("jack", "libjack.so.0")
    if jack is not None and hasattr(jack, "jack_set_error_function"):
        def on_jack(message):
            noise.jack += 1

        handler = text_type(on_jack)
        jack.jack_set_error_function(handler)
        if hasattr(jack, "jack_set_info_function"):
            jack.jack_set_info_function(handler)
        noise._keep.append(handler)
        noise.hooks.append("libjack")
    portaudio = load("portaudio", "libportaudio.so.2")
    if portaudio is not None and hasattr(portaudio, "PaUtil_SetDebugPrintFunction"):
        def on_portaudio(message):
            noise.portaudio += 1

        handler = text_type(on_portaudio)
        portaudio.PaUtil_SetDebugPrintFunction(handler)
        noise._keep.append(handler)
        noise.hooks.append("PortAudio")
    _noise = noise
    return noise


def _open_pyaudio():
    try:
        import pyaudio
    except ImportError as exc:
        raise OutputDeviceError(
            f"PyAudio is not installed ({exc}); fix: pip install -r requirements/device.txt "
            "(on the Pi: sudo apt install python3-pyaudio)"
        ) from exc
    noise = quiet_native_probing()
    before = noise.total()
    pa = pyaudio.PyAudio()
    if noise.total() > before:
        log.debug("PortAudio's device probe: %d lines of %s messages not printed", noise.total() - before,
                  "/".join(noise.hooks))
    return pyaudio, pa


def _devices(pa) -> list[OutputDevice]:
    try:
        default_index = pa.get_default_output_device_info()["index"]
    except OSError:
        default_index = -1
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if int(info.get("maxOutputChannels", 0)) <= 0:
            continue
        host_api = pa.get_host_api_info_by_index(info["hostApi"])["name"]
        devices.append(OutputDevice(index, str(info["name"]), int(info["maxOutputChannels"]),
                                    float(info["defaultSampleRate"]), str(host_api), index == default_index))
    return devices


def list_output_devices() -> list[OutputDevice]:
    """Every audio output PortAudio sees, with the default marked."""
    _, pa = _open_pyaudio()
    try:
        return _devices(pa)
    finally:
        pa.terminate()


def format_devices(devices: list[OutputDevice]) -> str:
    if not devices:
        return "  (no output devices: is a sound card connected and is the user in the 'audio' group?)"
    return "\n".join(
        f"  {'*' if d.is_default else ' '} {d.name}  ({d.max_output_channels} ch, {d.default_sample_rate_hz:.0f} Hz, {d.host_api})"
        for d in devices
    )


def choose_device(devices: list[OutputDevice], name_substring: str | None) -> OutputDevice:
    """The output whose name contains ``name_substring`` (case-insensitive), or the default one when None."""
    if not name_substring:
        for device in devices:
            if device.is_default:
                return device
        if devices:
            return devices[0]
        raise OutputDeviceError("no audio output device found:\n" + format_devices(devices))
    matches = [d for d in devices if name_substring.lower() in d.name.lower()]
    # The card itself ("… (hw:N,M)") before ALSA plugins that name it: no hidden resampler or mixing buffer between
    # the engine and the DAC (PortAudio converts float to the card's sample format itself).
    matches.sort(key=lambda d: "(hw:" not in d.name)
    if not matches:
        raise OutputDeviceError(
            f"no audio output device has {name_substring!r} in its name; available outputs:\n"
            f"{format_devices(devices)}\nset output_device (config) or --device to part of one of these names"
        )
    if len(matches) > 1:
        log.warning("output device %r matches %s; using %r", name_substring, [d.name for d in matches], matches[0].name)
    return matches[0]


class PyAudioSink:
    """A sound card through PyAudio in callback mode; the output is chosen by name, never by index.

    The callback copies the engine's ready samples into a preallocated buffer (mono duplicated to ``channels``);
    PyAudio's callback must return ``bytes`` (it refuses buffer views), so one bytes object per block is the
    only allocation.
    """

    realtime = True

    def __init__(self, device_name_substring: str | None = None, sample_rate_hz: int | None = None,
                 block_frames: int | None = None, *, channels: int = 2):
        self.device_name_substring = device_name_substring
        self.sample_rate_hz = sample_rate_hz
        self.block_frames = block_frames
        self.channels = channels
        self.device: OutputDevice | None = None
        self._pa = None
        self._stream = None
        self.callbacks = 0
        self.status_flags = 0  # OR of PortAudio's output underflow flags seen

    def start(self, pull: Pull, *, sample_rate_hz: int, block_frames: int) -> None:
        pyaudio, pa = _open_pyaudio()
        rate = int(self.sample_rate_hz or sample_rate_hz)
        block = int(self.block_frames or block_frames)
        try:
            device = choose_device(_devices(pa), self.device_name_substring)
            channels = max(1, min(self.channels, device.max_output_channels))
            mono = np.zeros(block, dtype=np.float32)
            frames = np.zeros((block, channels), dtype=np.float32)
            keep_going, complete = pyaudio.paContinue, pyaudio.paComplete

            def callback(in_data, frame_count, time_info, status):
                self.callbacks += 1
                self.status_flags |= status
                if frame_count != block:  # PortAudio may ask for another size: rare, allowed to allocate
                    out = np.zeros(frame_count, dtype=np.float32)
                    running = pull(out)
                    return (np.repeat(out, channels).tobytes(), keep_going if running else complete)
                running = pull(mono)
                for c in range(channels):
                    frames[:, c] = mono
                return (frames.tobytes(), keep_going if running else complete)

            stream = pa.open(format=pyaudio.paFloat32, channels=channels, rate=rate, output=True,
                             output_device_index=device.index, frames_per_buffer=block, stream_callback=callback,
                             start=False)
        except OutputDeviceError:
            pa.terminate()
            raise
        except (OSError, ValueError) as exc:
            pa.terminate()
            raise OutputDeviceError(
                f"cannot open audio output {self.device_name_substring or 'default'!r} at {rate} Hz ({exc}); "
                "check the device name (`python -m murmur.device list-devices`) and that nothing else holds the card"
            ) from exc
        self._pa, self._stream, self.device = pa, stream, device
        log.info("audio output: %s, %d Hz, %d ch, %d-frame blocks", device.name, rate, channels, block)
        stream.start_stream()

    def stop(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop_stream()
                self._stream.close()
            finally:
                self._stream = None
                if self._pa is not None:
                    self._pa.terminate()
                    self._pa = None


class _ThreadSink:
    """A sink whose own thread pulls blocks and hands them to ``consume``."""

    realtime = False

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.samples = 0
        self.error: BaseException | None = None

    def start(self, pull: Pull, *, sample_rate_hz: int, block_frames: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._block = np.zeros(block_frames, dtype=np.float32)
        self._stop.clear()
        self._open()
        self._thread = threading.Thread(target=self._run, args=(pull,), name=type(self).__name__, daemon=True)
        self._thread.start()

    def _run(self, pull: Pull) -> None:
        try:
            while not self._stop.is_set():
                if not self._next(pull):
                    break
                self._consume(self._block)
                self.samples += self._block.shape[0]
        except BaseException as exc:
            self.error = exc
            log.exception("%s stopped", type(self).__name__)

    def _next(self, pull: Pull) -> bool:
        return pull(self._block)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._close()

    def _open(self) -> None:
        pass

    def _consume(self, block: np.ndarray) -> None:
        pass

    def _close(self) -> None:
        pass


class WavSink(_ThreadSink):
    """Everything the engine plays, into a 16-bit WAV file (complete on ``stop``; written atomically)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._writer: WavWriter | None = None

    def _open(self) -> None:
        from murmur.device.dsp.wavio import WavWriter

        self._writer = WavWriter(self.path, self.sample_rate_hz)

    def _consume(self, block: np.ndarray) -> None:
        assert self._writer is not None, "_open runs before the first block"
        self._writer.write(block)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class NullSink(_ThreadSink):
    """Discards the audio; keeps counts. ``realtime=True`` paces pulls like a sound card (and never waits for
    the engine, so underruns count); ``realtime=False`` pulls as fast as the engine produces.
    ``keep_last`` keeps the last N samples (for checks)."""

    def __init__(self, *, realtime: bool = False, keep_last: int = 0) -> None:
        super().__init__()
        self.realtime = realtime
        self.first_block_monotonic: float | None = None
        self.kept = np.zeros(keep_last, dtype=np.float32)
        self.peak = 0.0
        self._next_due = 0.0

    def _next(self, pull: Pull) -> bool:
        if self.realtime:
            now = time.monotonic()
            if self._next_due == 0.0:
                self._next_due = now
            delay = self._next_due - now
            if delay > 0:
                self._stop.wait(delay)
            self._next_due += self._block.shape[0] / self.sample_rate_hz
        return pull(self._block)

    def _consume(self, block: np.ndarray) -> None:
        if self.first_block_monotonic is None:
            self.first_block_monotonic = time.monotonic()
        self.peak = max(self.peak, float(np.abs(block).max()))
        n = self.kept.shape[0]
        if n:
            b = block.shape[0]
            if b >= n:
                self.kept[:] = block[-n:]
            else:
                self.kept[:-b] = self.kept[b:]
                self.kept[-b:] = block
