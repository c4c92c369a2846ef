"""The TFLite step model of a real exported bundle, through the real runtime: names, state, fast path."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from murmur import REPO_ROOT
from murmur.device.bundle import load_bundle
from murmur.device.errors import BundleError
from murmur.device.generate.step_model import StepModel, open_bundle, open_step_model


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def run(model, frames: np.ndarray) -> np.ndarray:
    return np.stack([model.step(f).copy() for f in frames])


def test_fast_path_equals_the_public_set_tensor_invoke_path(bundle):
    fast = open_step_model(bundle)
    public = StepModel(bundle, fast_path=False)
    assert fast.fast_path and not public.fast_path
    frames = bundle.seed_frames(0, 40)
    np.testing.assert_array_equal(run(fast, frames), run(public, frames))


def test_state_is_carried_from_step_to_step(bundle):
    model = open_step_model(bundle)
    frame = bundle.seed_frames(10, 1)[0]
    first = model.step(frame).copy()
    second = model.step(frame).copy()
    assert not np.allclose(first, second), "the same input twice gave the same output: the state is not fed back"
    model.reset()
    np.testing.assert_array_equal(model.step(frame), first)


def test_get_and_set_state_resume_a_chain_exactly(bundle):
    model = open_step_model(bundle)
    frames = bundle.seed_frames(0, 30)
    run(model, frames[:10])
    saved = model.get_state()
    expected = run(model, frames[10:])
    model.reset()
    run(model, frames[:3])  # something else in between
    model.set_state(saved)
    np.testing.assert_array_equal(run(model, frames[10:]), expected)
    assert [s.shape for s in saved] == [(1, size) for size in bundle.model.state_sizes]


def test_step_returns_one_frame_in_model_units(bundle):
    model = open_step_model(bundle)
    out = model.step(bundle.seed_frames(5, 1)[0])
    assert out.shape == (bundle.audio.n_bins,) and out.dtype == np.float32
    # a trained model predicts near the data: within a few std of the per-bin range
    assert np.all(out > bundle.lo - 5) and np.all(out < bundle.hi + 5)


def test_step_timing_is_measured(bundle):
    model = open_step_model(bundle)
    before = model.get_state()
    ms = model.time_step_ms(50)
    assert 0.0 < ms < 1000.0
    after = model.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)), "timing must not move the state"


TFLITE_RUNTIME_PYTHON = REPO_ROOT / ".venv" / "tflite-runtime" / "bin" / "python"


@pytest.mark.skipif(not TFLITE_RUNTIME_PYTHON.exists(), reason="no .venv/tflite-runtime (make setup)")
def test_the_tflite_runtime_fallback_runs_the_same_model(bundle, tiny_bundle, tmp_path):
    """tflite-runtime 2.14 (numpy 1.26) through MURMUR_TFLITE_RUNTIME: opens, takes the fast path, agrees."""
    frames = bundle.seed_frames(0, 20)
    expected = run(open_step_model(bundle), frames)
    out = tmp_path / "steps.npy"
    script = (
        "import sys, numpy as np; from murmur.device.bundle import load_bundle; from murmur.device.generate.step_model import open_step_model; "
        f"b = load_bundle({str(tiny_bundle)!r}); m = open_step_model(b); f = b.seed_frames(0, 20); "
        f"np.save({str(out)!r}, np.stack([m.step(x).copy() for x in f])); print(m.runtime_name, m.fast_path)"
    )
    root = REPO_ROOT
    result = subprocess.run([str(TFLITE_RUNTIME_PYTHON), "-c", script], cwd=root, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPATH=str(root), MURMUR_TFLITE_RUNTIME="tflite_runtime"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["tflite_runtime", "True"]
    np.testing.assert_allclose(np.load(out), expected, atol=0.05)


def test_open_bundle_loads_checks_and_opens_the_model(tiny_bundle, tmp_path):
    bundle, model = open_bundle(tiny_bundle)
    assert bundle.path == tiny_bundle and model.bundle is bundle
    frames = bundle.seed_frames(0, 4)
    np.testing.assert_array_equal(run(model, frames), run(open_step_model(load_bundle(tiny_bundle)), frames))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.tflite").write_bytes(b"not a model")
    with pytest.raises(BundleError, match="model.tflite: checksum mismatch"):
        open_bundle(broken)
