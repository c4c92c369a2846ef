"""The sound does not change by accident: a fixed synthetic bundle, a fixed seed and a fixed knob script render
what the reference file (``render_reference.npz``, beside this test) holds, within float rounding.

The bundle is built here from formulas (no training, no SVD: a cosine basis stands in for the PCA) and the model is
``FakeStepModel``, so the render depends only on the device code: the frame-bank generator (cuts at every frame,
phrases, a jump, temperature 0 and > 0, the context term), the regression sampler, the real streaming vocoder, the gain ramp and the
soft limiter. Speed work on the per-frame path must keep this test passing; a change meant to alter the sound
rewrites the reference on purpose:

    PYTHONPATH=. .venv/trainer/bin/python tests/device/playback/test_render_reference.py --write
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from murmur.device.bundle import AudioSpec, BankIndex, Bundle, ContextIndex, ModelSpec, quantise_seeds
from murmur.device.controls.values import Controls
from murmur.device.playback.engine import BlockPipeline
from murmur.device.testing.fakes import FakeStepModel

REFERENCE = Path(__file__).with_name("render_reference.npz")
N_FRAMES_BANK = 3000
N_DIMS = 32
STRIDE = 16  # every 16th sample is kept in the reference (plus every block's energy)
# (first frame, controls) of the knob script; the reseed event fires at RESEED_AT
SCRIPT = (
    (0, Controls(fidelity=0.0, temperature=0.3, jump=0.0)),  # a cut at every frame: the worst case
    (120, Controls()),  # the defaults: phrases, a jump now and then
    (240, Controls(fidelity=0.0, temperature=0.0, jump=0.0, gain_db=12.0)),  # nearest frame; loud: the limiter
    (300, Controls(fidelity=0.6, temperature=1.0, position=0.2, spread=0.3, gain_db=-6.0)),  # a region, a gain ramp
)
RESEED_AT = 330
N_RENDER = 360
N_REGRESSION = 120


def synthetic_bundle(*, bank: bool = True) -> Bundle:
    """A format-2 (or, without ``bank``, format-1) bundle at 44.1 kHz / n_fft 2048 / hop 512 from formulas: a
    wandering harmonic tone over a sloping floor, with quiet stretches, quantised as the exporter does."""
    audio = AudioSpec(44100, 2048, 512)
    n_bins = audio.n_bins
    t = np.arange(N_FRAMES_BANK, dtype=np.float64)[:, None]
    k = np.arange(n_bins, dtype=np.float64)[None, :]
    f0 = 18.0 + 6.0 * np.sin(2 * np.pi * t / 410.0) + 3.0 * np.sin(2 * np.pi * t / 97.0)
    log_mag = -1.0 - k / 150.0 + 0.5 * np.sin(k / 7.0 + t / 13.0)
    for h in range(1, 7):
        log_mag = log_mag + (6.5 / h) * np.exp(-0.5 * ((k - h * f0) / 1.5) ** 2)
    envelope = 1.0 + 0.5 * np.sin(2 * np.pi * t / 60.0)
    log_mag = log_mag + 2.0 * np.log(envelope)
    log_mag[(t[:, 0] % 300) >= 270] -= 8.0  # 30 quiet frames every 300
    mean = log_mag.mean(axis=0)
    std = float(log_mag.std())
    frames_u8, lo, hi = quantise_seeds(((log_mag - mean) / std).astype(np.float32))
    dequantised = frames_u8 * ((hi - lo) / np.float32(255.0)) + lo
    index = None
    if bank:
        j = np.arange(N_DIMS, dtype=np.float64)[:, None]
        components = np.sqrt(2.0 / n_bins) * np.cos(np.pi * (k + 0.5) * j / n_bins)  # orthonormal (DCT-II) rows
        components[0] /= np.sqrt(2.0)
        pca_mean = dequantised.astype(np.float64).mean(axis=0)
        coords = ((dequantised - pca_mean) @ components.T).astype(np.float16).astype(np.float32)
        index = BankIndex(pca_mean.astype(np.float32), components.astype(np.float32), coords,
                          _context(dequantised.astype(np.float32), n_bins))
    model = ModelSpec("model.tflite", "serving_default", "frame", "next_frame", ("h0", "c0"), ("h0_out", "c0_out"),
                      (8, 8), "dynamic")
    return Bundle(path=Path("synthetic"), meta={"format_version": 2 if bank else 1, "bundle_id": "synthetic"},
                  audio=audio, model=model, log_floor=1e-5, std=std, mean=mean.astype(np.float32), lo=lo, hi=hi,
                  seeds_u8=frames_u8, segment_starts=np.array([0, 1700], dtype=np.int64), bank=index)


def _context(dequantised: np.ndarray, n_bins: int) -> ContextIndex:
    """Context keys as the exporter makes them, from FakeStepModel's state "h0" before each frame (identity basis)."""
    model = FakeStepModel(n_bins)
    states = np.zeros((dequantised.shape[0], 8), dtype=np.float32)
    for j, frame in enumerate(dequantised):
        if j in (0, 1700):
            model.reset()
        states[j] = model.get_state()[0][0]
        model.step(frame)
    keys = states.astype(np.float16).astype(np.float32)
    return ContextIndex("h0", np.zeros(8, np.float32), np.eye(8, dtype=np.float32), keys)


def _fake_model(bundle: Bundle) -> FakeStepModel:
    return FakeStepModel(bundle.audio.n_bins)


def render_reference() -> dict[str, np.ndarray]:
    """The scripted render: bank generator (indices and audio), then the regression sampler (audio)."""
    bundle = synthetic_bundle()
    script = dict(SCRIPT)
    pipeline = BlockPipeline(bundle, seed=5, controls=SCRIPT[0][1], model_factory=_fake_model)
    hop = pipeline.hop
    audio = np.empty(N_RENDER * hop, dtype=np.float32)
    indices = np.empty(N_RENDER, dtype=np.int32)
    controls = SCRIPT[0][1]
    for i in range(N_RENDER):
        controls = script.get(i, controls)
        audio[i * hop : (i + 1) * hop] = pipeline.next_block(controls, ("reseed",) if i == RESEED_AT else ())
        indices[i] = pipeline.voice.sampler.current
    regression = BlockPipeline(synthetic_bundle(bank=False), seed=5, model_factory=_fake_model)
    reg_audio = np.concatenate([regression.next_block(Controls(jump=1.0)).copy() for _ in range(N_REGRESSION)])
    return {
        "indices": indices,
        "samples": audio[::STRIDE].copy(),
        "energy": (audio.astype(np.float64).reshape(N_RENDER, hop) ** 2).sum(axis=1),
        "regression_samples": reg_audio[::STRIDE].copy(),
    }


@pytest.fixture(scope="module")
def rendered() -> dict[str, np.ndarray]:
    return render_reference()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        stored = {name: data[name] for name in data.files}
    machine = str(stored.get("machine", "x86_64"))
    if machine != platform.machine():
        # FFT, BLAS and numpy's SIMD maths round differently on another architecture: the audio would agree to
        # ~1e-6, but a near-tie at a cut could go the other way and everything after it differs
        pytest.skip(f"the reference was rendered on {machine}, this is {platform.machine()}: write one here with "
                    f"`{Path(__file__).name} --write` to compare on this machine")
    return stored


def test_the_bank_generator_chooses_the_same_frames(rendered, reference):
    np.testing.assert_array_equal(rendered["indices"], reference["indices"])


def test_the_render_is_the_reference_within_float_rounding(rendered, reference):
    peak = float(np.abs(reference["samples"]).max())
    assert peak > 0.5, "the reference render is loud enough for the limiter to act"
    np.testing.assert_allclose(rendered["samples"], reference["samples"], rtol=0, atol=1e-6 * max(peak, 1.0) * 10)
    np.testing.assert_allclose(rendered["energy"], reference["energy"], rtol=1e-5, atol=1e-9)


def test_the_regression_sampler_renders_the_reference(rendered, reference):
    np.testing.assert_allclose(rendered["regression_samples"], reference["regression_samples"], rtol=0, atol=1e-5)


if __name__ == "__main__":  # rewrite the reference (only when the sound is meant to change)
    if "--write" not in sys.argv:
        sys.exit(f"usage: {sys.argv[0]} --write   (rewrites {REFERENCE.name} from the current code)")
    np.savez_compressed(REFERENCE, machine=np.array(platform.machine()), **render_reference())
    print(f"wrote {REFERENCE}")
