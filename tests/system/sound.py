"""Is what came out of the guest's sound card the bundle's sound? Simple, honest figures on a capture.

Under emulation the guest cannot keep real time: the engine misses blocks and fills them with silence (edges
faded), so a capture is sound in stretches of a few blocks between gaps. Every figure is therefore taken over
*whole frames*: 512-sample frames (the engine's hop at 44.1 kHz) whose every quarter is sounding
(above ``GAP_DBFS``); the share of time in gaps is reported, not failed.

- ``band_spectrum``: the long-term spectrum of those frames (Hann window) in third-octave bands 250 Hz - 16 kHz,
  dB, level removed (mean 0): the timbre, whatever the gain, the volume cap or the gaps.
- ``distance``: RMS difference of two band spectra, dB. The capture must be far closer to the bundle's source
  (analysed the same way) than to white or pink noise (a broken vocoder, static, a wrong sample format all sound
  like noise) and than to a tone (a stuck oscillator, a hum).
- ``variation``: the spread (std, dB) of the frames' levels: a steady hiss or hum scores near 0, music several dB.
"""

from __future__ import annotations

import numpy as np

GAP_DBFS = -70.0
FRAME = 512
BANDS_HZ = 1000.0 * 2.0 ** (np.arange(-6, 13) / 3.0)  # 250 Hz … 16 kHz, third octaves (a 512-frame's bins are 86 Hz)


def _db(power: np.ndarray) -> np.ndarray:
    return 10 * np.log10(power + 1e-20)


def whole_frames(mono: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """(n, frame) frames at half-frame hops whose four quarters are all sounding."""
    x = mono.astype(np.float64)
    if x.size < frame:
        return np.zeros((0, frame))
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[:: frame // 2]
    quarters = frames.reshape(frames.shape[0], 4, frame // 4)
    keep = (_db(np.mean(quarters**2, axis=2)) > GAP_DBFS).all(axis=1)
    return frames[keep]


def band_spectrum(frames: np.ndarray, rate: int) -> np.ndarray:
    """Mean power per third-octave band over ``frames`` (Hann), dB, mean removed."""
    if frames.shape[0] == 0:
        raise ValueError("no whole sounding frame to analyse")
    n = frames.shape[1]
    power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    bands = []
    for centre in BANDS_HZ:
        sel = (freqs >= centre / 2 ** (1 / 6)) & (freqs < centre * 2 ** (1 / 6))
        bands.append(power[sel].mean() if sel.any() else np.nan)
    db = _db(np.asarray(bands))
    return db - np.nanmean(db)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def variation(frames: np.ndarray) -> float:
    return float(np.std(_db(np.mean(frames**2, axis=1)))) if frames.shape[0] > 2 else 0.0


def references(rate: int, seconds: float = 10.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Band spectra of what the capture must NOT be: white noise, pink noise, a 440-Hz tone."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    pink = np.fft.irfft(spectrum, n)
    tone = np.sin(2 * np.pi * 440.0 * np.arange(n) / rate) + 1e-4 * white  # a hum, with a hiss floor
    return {name: band_spectrum(whole_frames(x), rate)
            for name, x in (("white noise", white), ("pink noise", pink), ("440-Hz tone", tone))}


def judge(capture: np.ndarray, rate: int, source: np.ndarray, source_rate: int) -> dict:
    """The figures of a capture (mono float) against the source recording."""
    frames = whole_frames(capture)
    sounding_s = frames.shape[0] * FRAME / 2 / rate  # half-frame hops: each frame adds half a frame of time
    n = FRAME
    levels = _db(np.mean(capture[: capture.size // n * n].astype(np.float64).reshape(-1, n) ** 2, axis=1))
    figures: dict = {"seconds": round(capture.size / rate, 2), "gap_fraction": round(float(np.mean(levels <= GAP_DBFS)), 3),
                     "whole_frames": int(frames.shape[0]), "sounding_s": round(sounding_s, 2)}
    if frames.shape[0] < 20:
        figures["level_dbfs"] = -200.0
        return figures
    figures["level_dbfs"] = round(float(_db(np.mean(frames**2))), 1)
    captured = band_spectrum(frames, rate)
    source_frames = whole_frames(source)
    figures["distance_to_source_db"] = round(distance(captured, band_spectrum(source_frames, source_rate)), 2)
    for name, ref in references(rate).items():
        figures[f"distance_to_{name.replace(' ', '_').replace('-', '')}_db"] = round(distance(captured, ref), 2)
    figures["variation_db"] = round(variation(frames), 2)
    figures["source_variation_db"] = round(variation(source_frames), 2)
    return figures


def silent_blocks(mono: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """Per ``frame``-sample block: True where the block is a gap (RMS at or under ``GAP_DBFS``)."""
    n = mono.size // frame
    blocks = mono[: n * frame].astype(np.float64).reshape(n, frame)
    return _db(np.mean(blocks**2, axis=1)) <= GAP_DBFS


def longest_run(flags: np.ndarray) -> int:
    """The longest stretch of consecutive True values."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


SHAPE_FLOOR_DB = 25.0


def shape(spectrum: np.ndarray, floor_db: float = SHAPE_FLOOR_DB) -> np.ndarray:
    """Where a sound's energy lies: its band spectrum with every band floored at ``floor_db`` under the loudest,
    mean removed. Under emulation the underrun gaps' edges spread each sound's energy some 30 dB down across the
    bands; this keeps two sounds' shapes apart where the plain band distance lets that spread dominate."""
    db = np.nan_to_num(spectrum, nan=-200.0)
    db = np.maximum(db, db.max() - floor_db)
    return db - db.mean()


def which_sound(mono: np.ndarray, rate: int, spectra: dict[str, np.ndarray], window_s: float = 2.0,
                min_frames: int = 10) -> list[tuple[float, str | None, dict[str, float]]]:
    """Window by window (``window_s``, half-overlapping): the name of the band spectrum in ``spectra`` whose
    ``shape`` is nearest to the window's whole frames', or None where the window holds fewer than ``min_frames``
    whole frames (a gap); (window start in seconds, name, distances in dB)."""
    size, hop = int(window_s * rate), int(window_s * rate / 2)
    out: list[tuple[float, str | None, dict[str, float]]] = []
    for start in range(0, max(0, mono.size - size) + 1, hop):
        frames = whole_frames(mono[start: start + size])
        if frames.shape[0] < min_frames:
            out.append((start / rate, None, {}))
            continue
        captured = shape(band_spectrum(frames, rate))
        dist = {name: round(distance(captured, shape(ref)), 2) for name, ref in spectra.items()}
        out.append((start / rate, min(dist, key=lambda k: dist[k]), dist))
    return out
