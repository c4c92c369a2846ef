"""Bad bundles are refused before anything plays, each with an error naming the file and the problem.

Uses the real exported tiny bundle (tests/conftest.py) and damaged copies of it; the runtime checks go through
``murmur.device.generate.step_model.open_step_model`` with the real TFLite runtime.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from murmur.device.bundle import META_FILE, MODEL_FILE, SEEDS_FILE, load_bundle, write_bundle
from murmur.device.errors import BundleError, RuntimeNotFound
from murmur.device.generate.runtime import load_interpreter_class
from murmur.device.generate.step_model import open_step_model


def copy_bundle(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(src, dst)
    return dst


def resign(bundle_dir: Path, *, meta_changes: dict | None = None, files: dict[str, bytes] | None = None) -> Path:
    """Rewrite a bundle (new checksums) with changed metadata/files, as a broken exporter would."""
    meta = json.loads((bundle_dir / META_FILE).read_text())
    contents = {name: (bundle_dir / name).read_bytes() for name in meta.pop("files")}
    contents.update(files or {})
    for key, value in (meta_changes or {}).items():
        *tables, field = key.split(".")
        target = meta
        for table in tables:
            target = target[table]
        target[field] = value
    return write_bundle(bundle_dir, meta, contents)


def test_the_tiny_bundle_loads_and_its_model_runs(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    model = open_step_model(bundle)
    out = model.step(bundle.seed_frames(0, 1)[0])
    assert out.shape == (bundle.audio.n_bins,) and out.dtype == np.float32 and np.isfinite(out).all()


def test_missing_model_file_is_named(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    (path / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match=r"model\.tflite: missing"):
        load_bundle(path)


def test_missing_metadata_says_it_is_not_a_bundle(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    (path / META_FILE).unlink()
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(path)


def test_checksum_mismatch_names_the_damaged_file(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    data = bytearray((path / SEEDS_FILE).read_bytes())
    data[-10] ^= 0xFF
    (path / SEEDS_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"seeds\.npz: checksum mismatch"):
        load_bundle(path)


def test_unknown_format_version_says_what_this_device_reads(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    meta = json.loads((path / META_FILE).read_text())
    meta["format_version"] = 99
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"format_version 99 is not supported.*reads 1, 2"):
        load_bundle(path)


def format_1_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """The tiny bundle as the format-1 trainer wrote it: seeds.npz without the PCA index, format_version 1."""
    path = copy_bundle(tiny_bundle, tmp_path)
    with np.load(path / SEEDS_FILE) as npz:
        arrays = {key: npz[key] for key in ("frames_u8", "lo", "hi", "mean", "segment_starts")}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    meta = json.loads((path / META_FILE).read_text())
    contents = {name: (path / name).read_bytes() for name in meta.pop("files")}
    contents[SEEDS_FILE] = buffer.getvalue()
    return write_bundle(path, meta, contents, format_version=1)


def test_a_format_1_bundle_still_plays_through_the_regression_sampler(tiny_bundle, tmp_path):
    from murmur.device.generate.sampler import Sampler
    from murmur.device.playback.engine import render

    old = load_bundle(format_1_copy(tiny_bundle, tmp_path))
    assert old.format_version == 1 and old.bank is None
    audio = render(old, 0.5, seed=1)
    assert np.isfinite(audio).all() and float(np.sqrt(np.mean(audio**2))) > 1e-4
    from murmur.device.playback.engine import BlockPipeline

    assert isinstance(BlockPipeline(old, seed=1).voice.sampler, Sampler)


def test_a_format_2_bundle_without_its_pca_index_is_refused_naming_the_array(tiny_bundle, tmp_path):
    path = resign(format_1_copy(tiny_bundle, tmp_path))  # rewritten as format 2 (write_bundle's default)
    with pytest.raises(BundleError, match=r"seeds\.npz: array 'pca_mean'.* missing \(format 2 needs"):
        load_bundle(path)


def test_a_pca_index_of_the_wrong_shape_is_refused(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    with np.load(path / SEEDS_FILE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["bank_coords"] = arrays["bank_coords"][:-3]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    resign(path, files={SEEDS_FILE: buffer.getvalue()})
    with pytest.raises(BundleError, match=r"bank_coords .* do not match"):
        load_bundle(path)


def test_seed_frames_of_the_wrong_width_are_refused(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    with np.load(path / SEEDS_FILE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["frames_u8"] = arrays["frames_u8"][:, :-1]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    resign(path, files={SEEDS_FILE: buffer.getvalue()})
    with pytest.raises(BundleError, match=r"frames_u8 has shape \(\d+, 1024\).*expected \(n, 1025\)"):
        load_bundle(path)


def _without_context(path) -> dict:
    """The bundle's seeds.npz arrays without the optional context index (as an older export wrote it)."""
    with np.load(path / SEEDS_FILE) as npz:
        return {key: npz[key] for key in npz.files if not key.startswith("context_")}


def test_state_sizes_that_disagree_with_the_model_are_refused_at_open(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    sizes = json.loads((path / META_FILE).read_text())["model"]["state_sizes"]
    buffer = io.BytesIO()
    np.savez(buffer, **_without_context(path))
    resign(path, meta_changes={"model.state_sizes": [s * 2 for s in sizes]}, files={SEEDS_FILE: buffer.getvalue()})
    bundle = load_bundle(path)  # the metadata alone is consistent ...
    with pytest.raises(BundleError, match=rf"input 'h0' has shape \(1, {sizes[0]}\).*\(1, {sizes[0] * 2}\)"):
        open_step_model(bundle)  # ... the model is not


def test_context_keys_that_disagree_with_the_state_are_refused_at_load(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    sizes = json.loads((path / META_FILE).read_text())["model"]["state_sizes"]
    resign(path, meta_changes={"model.state_sizes": [s * 2 for s in sizes]})
    with pytest.raises(BundleError, match=rf"context_components \(32, {sizes[0]}\).*{sizes[0] * 2}-wide state 'h\d'"):
        load_bundle(path)
    path = copy_bundle(tiny_bundle, tmp_path / "named")
    resign(path, meta_changes={"seeds.bank.context.state": "h9"})
    with pytest.raises(BundleError, match="context.state is 'h9'"):
        load_bundle(path)


def test_a_bank_without_context_keys_still_loads_and_plays_by_the_frame_alone(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    buffer = io.BytesIO()
    np.savez(buffer, **_without_context(path))
    resign(path, files={SEEDS_FILE: buffer.getvalue()})
    assert load_bundle(path).bank.context is None
    assert load_bundle(tiny_bundle).bank.context is not None


def test_n_fft_that_disagrees_with_the_model_is_refused_at_open(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    meta = json.loads((path / META_FILE).read_text())
    with np.load(path / SEEDS_FILE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    half = meta["audio"]["n_fft"] // 2
    n_bins = half // 2 + 1
    arrays = {k: (v[..., :n_bins] if k in ("frames_u8", "lo", "hi", "mean", "pca_mean", "pca_components") else v)
              for k, v in arrays.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    resign(path, meta_changes={"audio.n_fft": half, "audio.hop_length": half // 4}, files={SEEDS_FILE: buffer.getvalue()})
    with pytest.raises(BundleError, match=rf"'frame' has shape \(1, {meta['audio']['n_fft'] // 2 + 1}\).*\(1, {n_bins}\)"):
        open_step_model(load_bundle(path))


def test_wrong_tensor_names_are_listed(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    resign(path, meta_changes={"model.output_frame": "prediction"})
    with pytest.raises(BundleError, match=r"missing \['prediction'\], unexpected \['next_frame'\]"):
        open_step_model(load_bundle(path))


def test_unknown_signature_is_refused(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    resign(path, meta_changes={"model.signature": "generate"})
    with pytest.raises(BundleError, match=r"no signature 'generate'"):
        open_step_model(load_bundle(path))


def test_truncated_model_with_matching_checksum_is_refused_by_the_runtime(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    model = (path / MODEL_FILE).read_bytes()
    resign(path, files={MODEL_FILE: model[: len(model) // 2]})
    bundle = load_bundle(path)  # header and checksum are fine
    with pytest.raises(BundleError, match=r"model\.tflite: the TFLite runtime \(\w+\) cannot load this model"):
        open_step_model(bundle)


def test_truncated_model_without_new_checksum_fails_the_checksum(tiny_bundle, tmp_path):
    path = copy_bundle(tiny_bundle, tmp_path)
    model = (path / MODEL_FILE).read_bytes()
    (path / MODEL_FILE).write_bytes(model[: len(model) // 2])
    with pytest.raises(BundleError, match=r"model\.tflite: checksum mismatch"):
        load_bundle(path)


def test_a_model_that_returns_nan_is_refused(tiny_bundle, tmp_path, monkeypatch):
    """A weightless export (``from_concrete_functions``) returns NaN silently; open_step_model must notice it."""
    import murmur.device.generate.step_model as step_model

    bundle = load_bundle(tiny_bundle)
    real_step = step_model.StepModel.step

    def nan_step(self, frame):
        out = real_step(self, frame)
        out[3] = np.nan
        return out

    monkeypatch.setattr(step_model.StepModel, "step", nan_step)
    with pytest.raises(BundleError, match=r"non-finite values \(\d+ of"):
        open_step_model(bundle)


def test_runtime_override_picks_that_runtime(monkeypatch):
    monkeypatch.setenv("MURMUR_TFLITE_RUNTIME", "ai_edge_litert")
    interpreter_class, name = load_interpreter_class()
    assert name == "ai_edge_litert" and interpreter_class.__module__.startswith("ai_edge_litert")


def test_unknown_runtime_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MURMUR_TFLITE_RUNTIME", "onnx")
    with pytest.raises(RuntimeNotFound, match=r"MURMUR_TFLITE_RUNTIME='onnx' is not a known TFLite runtime"):
        load_interpreter_class()


def test_missing_runtime_gives_the_pip_command(monkeypatch):
    import murmur.device.generate.runtime as runtime

    monkeypatch.setitem(runtime.RUNTIMES, "tflite_runtime", ("no_such_module_for_tests.interpreter", "Interpreter"))
    monkeypatch.setattr(runtime, "_cache", {})
    with pytest.raises(RuntimeNotFound, match=r"pip install -r requirements/device\.txt"):
        load_interpreter_class("tflite_runtime")


def test_a_model_that_fails_at_invoke_is_refused(tiny_bundle, monkeypatch):
    import murmur.device.generate.step_model as step_model

    def failing_step(self, frame):
        raise RuntimeError("Encountered unresolved custom op: FlexTensorListReserve")

    monkeypatch.setattr(step_model.StepModel, "step", failing_step)
    with pytest.raises(BundleError, match=r"fails running this model \(Encountered unresolved custom op"):
        open_step_model(load_bundle(tiny_bundle))
