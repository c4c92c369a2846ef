"""The legacy runtime: tflite-runtime 2.14 (numpy < 2, its own venv from `make setup`) loads and steps what the
exporter writes, with the same outputs as ai-edge-litert (it needs per-tensor dynamic-range weights; see
docs/ARCHITECTURE.md §5)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from murmur import REPO_ROOT
from murmur.device.bundle import load_bundle
from murmur.trainer.export import PARITY_TOLERANCE, device_runtime_outputs, tflite_runtime_python
from murmur.trainer.model import ModelConfig

pytestmark = pytest.mark.slow
PROBE = REPO_ROOT / "trainer" / "tflite_runtime_probe.py"


@pytest.fixture(scope="module")
def legacy_python() -> Path:
    python = tflite_runtime_python()
    if python is None:
        pytest.fail("no .venv/tflite-runtime: run `make setup` (it builds it from requirements/tflite-runtime.txt)")
    return python


def test_legacy_venv_is_the_old_runtime_with_numpy_1(legacy_python):
    out = subprocess.run([str(legacy_python), "-c", "import numpy, importlib.metadata as m; "
                          "print(numpy.__version__, m.version('tflite-runtime'))"], capture_output=True, text=True, check=True)
    numpy_version, runtime_version = out.stdout.split()
    assert numpy_version.startswith("1.") and runtime_version == "2.14.0"


@pytest.mark.parametrize("quantisation", ["dynamic", "float16"])
def test_tflite_runtime_steps_the_exported_model_like_ai_edge_litert(legacy_python, tiny_training_factory, tmp_path,
                                                                     quantisation):
    from murmur.trainer.export import export_bundle

    outcome = tiny_training_factory()
    if quantisation == "dynamic":
        path = outcome.export.path
    else:
        cfg = ModelConfig(**outcome.export.meta["training"]["model_config"])
        path = export_bundle(outcome.fit.model, cfg, outcome.dataset, tmp_path / "b16", quantisation=quantisation).path
    bundle = load_bundle(path)
    assert bundle.meta["model"]["runtimes_verified"] == ["ai_edge_litert", "tflite_runtime"]  # the exporter checked
    frames = bundle.seed_frames(0, 40)
    np.save(tmp_path / "frames.npy", frames)
    (tmp_path / "meta.json").write_text(json.dumps({"model": bundle.meta["model"]}))
    proc = subprocess.run([str(legacy_python), str(PROBE), str(bundle.model_path), str(tmp_path / "frames.npy"),
                           str(tmp_path / "out.npy"), str(tmp_path / "meta.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    legacy = np.load(tmp_path / "out.npy")
    cfg = ModelConfig(**bundle.meta["training"]["model_config"])
    reference = device_runtime_outputs(bundle.model_path.read_bytes(), cfg, frames)
    assert legacy.shape == reference.shape == (40, bundle.audio.n_bins)
    assert np.all(np.isfinite(legacy))
    assert float(np.max(np.abs(legacy - reference))) <= PARITY_TOLERANCE[quantisation]
