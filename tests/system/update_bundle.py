"""The booted test's second bundle, for the update and rollback step: the tiny bundle's recipe (tests/conftest.py
``TINY_OPTIONS``, the same STFT settings, so the service hot-reloads it) trained on the same ~5 s of real audio
through a high-pass filter. Its sound is therefore clearly another one: the capture after an update can be told
from the one before by where its energy lies (tests/system/sound.py ``shape``), which a renamed copy could not
show. High-pass rather than low-pass: the recording's energy is mostly low, and the emulated guest's underrun gaps
spread a low-heavy sound's energy upwards some 30 dB down, which would blur a low-passed copy into the original.

Usage (trainer venv): python tests/system/update_bundle.py OUT_BUNDLE_DIR OUT_SOURCE_WAV
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

HIGHPASS_HZ = 2000.0  # 4th-order Butterworth, forward and back: the bands under ~1.6 kHz fall by 48 dB per octave


def highpassed_source() -> tuple[np.ndarray, int]:
    from scipy.signal import butter, sosfiltfilt

    from tests.conftest import _tiny_audio_samples

    audio, rate = _tiny_audio_samples()
    sos = butter(4, HIGHPASS_HZ, btype="highpass", fs=rate, output="sos")
    filtered = sosfiltfilt(sos, audio.astype(np.float64))
    filtered *= 0.5 / max(1e-9, float(np.max(np.abs(filtered))))  # peak -6 dBFS, as loud as the source roughly
    return filtered.astype(np.float32), rate


def main(out: Path, source_out: Path) -> None:
    import soundfile

    from murmur.trainer.pipeline import TrainOptions, train_bundle
    from tests.conftest import TINY_OPTIONS

    audio, rate = highpassed_source()
    source_out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(source_out, audio, rate, subtype="FLOAT")
    with tempfile.TemporaryDirectory() as tmp:
        train_bundle(source_out, out, TrainOptions(**dict(TINY_OPTIONS, cache_dir=Path(tmp) / "cache",
                                                          name="tiny-highpass")))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
