"""`python -m murmur.device resynth IN --out OUT.wav`: an audio file through its STFT magnitudes and the vocoder alone.

No model: this is the best a bundle trained on that sound can sound, and the vocoder's quality check on any
file. OUT has IN's sample rate and length and is sample-aligned with it (the vocoder's latency removed), so the
two can be compared directly. Prints the spectral convergence (dB, lower is better) and the per-frame time.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from murmur.device.dsp import frames, wavio
from murmur.device.dsp.vocoder import StreamingVocoder, spectral_convergence_db, vocode
from murmur.device.errors import AudioFileError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m murmur.device resynth",
        description="Resynthesise an audio file from its STFT magnitudes with the streaming vocoder (no model).",
    )
    parser.add_argument("input", metavar="IN", help="audio file (WAV/FLAC/OGG/MP3/AIFF; multichannel is downmixed)")
    parser.add_argument("--out", required=True, metavar="OUT.wav", help="16-bit WAV to write, aligned with IN")
    parser.add_argument("--n-fft", type=int, default=2048, help="FFT size in samples (default 2048)")
    parser.add_argument("--hop", type=int, default=512, help="hop length in samples, <= n_fft/4 (default 512)")
    parser.add_argument("--lookahead", type=int, default=3, help="look-ahead frames (default 3)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per frame (default: the vocoder's)")
    return parser


def resynthesise(
    audio: np.ndarray, *, n_fft: int, hop_length: int, lookahead: int = 3, iterations: int | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """Mono audio (n_samples,) -> (resynthesis (n_samples,) float32 aligned with it, SC dB, seconds per frame)."""
    vocoder = (StreamingVocoder(n_fft=n_fft, hop_length=hop_length, lookahead=lookahead) if iterations is None else
               StreamingVocoder(n_fft=n_fft, hop_length=hop_length, lookahead=lookahead, iterations=iterations))
    magnitudes = frames.stft_magnitudes(audio, n_fft=n_fft, hop_length=hop_length)
    rebuilt, seconds = vocode(magnitudes, vocoder, n_samples=audio.shape[0])
    sc_db = spectral_convergence_db(magnitudes, rebuilt, n_fft=n_fft, hop_length=hop_length)
    return rebuilt, sc_db, seconds


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv[1:])
    try:
        audio, sample_rate_hz = wavio.read_audio(args.input)
        if not np.any(audio):
            raise AudioFileError(f"{args.input}: the audio is all zeros (silent); there is nothing to resynthesise")
        rebuilt, sc_db, seconds = resynthesise(
            audio, n_fft=args.n_fft, hop_length=args.hop, lookahead=args.lookahead, iterations=args.iterations
        )
    except AudioFileError as exc:
        print(f"resynth: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad --n-fft / --hop / --lookahead / --iterations
        print(f"resynth: {exc}", file=sys.stderr)
        return 2
    clipped = int(np.count_nonzero(np.abs(rebuilt) > 1.0))
    try:
        wavio.write_wav(args.out, rebuilt, sample_rate_hz)
    except OSError as exc:
        print(f"resynth: cannot write {args.out}: {exc}; choose a writable path for --out", file=sys.stderr)
        return 2
    duration_s = audio.shape[0] / sample_rate_hz
    per_frame_ms = 1e3 * float(np.median(seconds))
    frame_budget_ms = 1e3 * args.hop / sample_rate_hz
    print(f"wrote {args.out}: {duration_s:.2f} s at {sample_rate_hz} Hz, aligned with {args.input}")
    print(f"spectral convergence {sc_db:.2f} dB (lower is better; n_fft {args.n_fft}, hop {args.hop}, "
          f"look-ahead {args.lookahead} frames)")
    print(f"vocoder {per_frame_ms:.3f} ms per frame (median of {seconds.shape[0]}), "
          f"{frame_budget_ms / per_frame_ms:.0f}x real time on one core")
    if clipped:
        print(f"note: {clipped} samples exceeded full scale and were clipped in the WAV")
    return 0
