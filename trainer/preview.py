"""Preview: render the new bundle with the device's own generator and vocoder (``murmur.device.playback.engine.render``, the
code that runs on the Pi) to a WAV, and draw the source and generated spectrograms with the loss curve (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murmur.device.bundle import load_bundle
from murmur.device.dsp import frames
from murmur.device.dsp.wavio import write_wav  # the one WAV writer 16-bit, atomic; trainer.cli takes it from here
from murmur.device.files import PendingFile

from .fit import EpochRecord

__all__ = ["draw", "render_preview", "write_wav"]


def render_preview(bundle_dir: Path, seconds: float, *, seed: int = 0) -> tuple[np.ndarray, int]:
    """``seconds`` of free-running generation -> ((n_samples,) float32 audio, sample rate)."""
    from murmur.device.playback.engine import render  # the device's generator + vocoder

    bundle = load_bundle(bundle_dir)
    audio = render(bundle, seconds, seed=seed)
    return np.asarray(audio, dtype=np.float32), bundle.audio.sample_rate_hz


def draw(path: Path, source_log_mag: np.ndarray, generated: np.ndarray, *, sample_rate_hz: int, n_fft: int,
         hop_length: int, history: list[EpochRecord], baseline_lsd_db: float, title: str,
         figures_text: str | None = None) -> None:
    """PNG: source spectrogram (log_mag (n_frames, n_bins), natural log) | generated audio's | loss curves, and
    ``figures_text`` (a few lines, e.g. the sound check's) printed under them when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen_db = 20 * np.log10(frames.stft_magnitudes(generated, n_fft=n_fft, hop_length=hop_length) + 1e-5)
    src_db = source_log_mag * (20 / np.log(10))
    vmax = max(float(np.percentile(src_db, 99.5)), float(np.percentile(gen_db, 99.5)))
    n_text = len(figures_text.splitlines()) if figures_text else 0
    text_in = 0.17 * n_text + (0.3 if n_text else 0.0)  # inches below the plots
    fig, axes = plt.subplots(3, 1, figsize=(11, 10 + text_in), gridspec_kw={"height_ratios": [3, 3, 2]})
    nyquist_khz = sample_rate_hz / 2000
    for ax, spec, label in ((axes[0], src_db, "source (training audio)"), (axes[1], gen_db, "generated (device render)")):
        seconds = spec.shape[0] * hop_length / sample_rate_hz
        ax.imshow(spec.T, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                  extent=(0, seconds, 0, nyquist_khz))
        ax.set_ylabel("kHz")
        ax.set_title(label)
    axes[1].set_xlabel("seconds")
    ax = axes[2]
    if history:
        epochs = [r.epoch for r in history]
        ax.plot(epochs, [r.loss for r in history], label="training loss (MSE, with input noise)")
        ax.plot(epochs, [r.val_loss for r in history], label="held-out loss (MSE)")
        best = min(history, key=lambda r: r.val_loss)
        ax.axvline(best.epoch, color="grey", linestyle=":", label=f"best epoch {best.epoch}")
        ax2 = ax.twinx()
        ax2.plot(epochs, [r.val_lsd_db for r in history], color="tab:green", label="held-out LSD (dB)")
        ax2.axhline(baseline_lsd_db, color="tab:red", linestyle="--", label="repeat-last-frame LSD (dB)")
        ax2.set_ylabel("dB")
        ax2.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (model units)")
    ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    if figures_text:
        bottom = text_in / (10 + text_in)
        fig.text(0.01, 0.005, figures_text, family="monospace", fontsize=7.5, va="bottom", ha="left")
        fig.tight_layout(rect=(0, bottom, 1, 1))
    else:
        fig.tight_layout()
    try:
        with PendingFile(path) as pending:
            fig.savefig(pending.file, format="png", dpi=90)
    finally:
        plt.close(fig)
