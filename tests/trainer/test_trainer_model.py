"""Trainer model side, on a real tiny training run (conftest ``tiny_training_factory``): the exported bundle,
the TFLite file under the device runtime against the Keras step model, quantisation options, atomic writes,
seeded reproducibility and the time budget."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import murmur.device.bundle as bundle_mod
from murmur.device.bundle import load_bundle
from murmur.trainer.export import PARITY_TOLERANCE, export_bundle
from murmur.trainer.model import ModelConfig, build_step_model, copy_weights
from murmur.trainer.pipeline import TrainOptions, train_bundle

pytestmark = pytest.mark.slow


def config_of(outcome) -> ModelConfig:
    return ModelConfig(**outcome.export.meta["training"]["model_config"])


def keras_steps(step_model, cfg: ModelConfig, inputs: np.ndarray) -> np.ndarray:
    states = {f"{k}{i}": np.zeros((1, cfg.units), np.float32) for i in range(cfg.layers) for k in ("h", "c")}
    outs = []
    for frame in inputs:
        out = step_model({"frame": frame[None], **states}, training=False)
        outs.append(np.asarray(out["next_frame"])[0])
        states = {name: np.asarray(out[f"{name}_out"]) for name in states}
    return np.stack(outs)


def test_tiny_bundle_loads_and_describes_itself(tiny_bundle: Path):
    bundle = load_bundle(tiny_bundle)
    meta = bundle.meta
    assert bundle.audio.sample_rate_hz == 44100 and bundle.audio.n_fft == 2048 and bundle.audio.hop_length == 512
    assert bundle.model.quantisation == "dynamic" and bundle.model.state_sizes == (32,) * 6
    assert meta["model"]["runtimes_verified"][0] == "ai_edge_litert"
    assert 0 <= meta["model"]["parity_max_abs_error"] <= meta["model"]["parity_tolerance"]
    validation = meta["training"]["validation"]
    assert validation["teacher_forced_lsd_db"] > 0 and validation["repeat_last_frame_lsd_db"] > 0
    assert meta["training"]["epochs"] == len(meta["training"]["history"]) >= 1
    assert meta["training"]["data"]["files"][0]["name"] == "tiny.wav"
    assert {"tensorflow-cpu", "keras", "numpy", "ai-edge-litert"} <= set(meta["tools"])
    assert bundle.n_seed_frames == meta["training"]["data"]["files"][0]["frames"]  # 5 s: every frame kept
    assert np.all(bundle.lo < bundle.hi)


def test_step_model_equals_sequence_model(tiny_training_factory):
    outcome = tiny_training_factory()
    cfg = config_of(outcome)
    step = build_step_model(cfg)
    copy_weights(outcome.fit.model, step, cfg)
    frames = outcome.dataset.validation.inputs[0][:20]
    sequence_out = np.asarray(outcome.fit.model(frames[None], training=False))[0]
    np.testing.assert_allclose(keras_steps(step, cfg, frames), sequence_out, atol=2e-5)


def test_device_runtime_loads_the_file_and_steps_like_keras(tiny_training_factory):
    from ai_edge_litert.interpreter import Interpreter

    outcome = tiny_training_factory()
    bundle = load_bundle(outcome.export.path)
    cfg = config_of(outcome)
    interpreter = Interpreter(model_path=str(bundle.model_path))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "FULLY_CONNECTED" in ops and not any(op.startswith(("FLEX", "WHILE", "CUSTOM")) for op in ops)
    runner = interpreter.get_signature_runner(bundle.model.signature)
    inputs = bundle.seed_frames(0, 60)
    states = {name: np.zeros((1, size), np.float32) for name, size in zip(bundle.model.input_states, bundle.model.state_sizes, strict=True)}
    got = []
    for frame in inputs:
        out = runner(**{bundle.model.input_frame: frame[None]}, **states)
        got.append(out[bundle.model.output_frame][0])
        states = {i: out[o] for i, o in zip(bundle.model.input_states, bundle.model.output_states, strict=True)}
    step = build_step_model(cfg)
    copy_weights(outcome.fit.model, step, cfg)
    error = float(np.max(np.abs(np.stack(got) - keras_steps(step, cfg, inputs))))
    assert error <= PARITY_TOLERANCE["dynamic"]
    assert error > 0  # int8 weights really are in the file (an exact match would mean no quantisation)


def test_float_exports_are_bigger_and_closer(tiny_training_factory, tmp_path):
    outcome = tiny_training_factory()
    cfg = config_of(outcome)
    results = {"dynamic": outcome.export}
    for q in ("float16", "float32"):
        results[q] = export_bundle(outcome.fit.model, cfg, outcome.dataset, tmp_path / q, quantisation=q,
                                   verify_legacy_runtime=False)  # (tflite-runtime has its own test)
        assert load_bundle(results[q].path).model.quantisation == q
    sizes = {q: r.model_bytes for q, r in results.items()}
    errors = {q: r.parity_max_abs_error for q, r in results.items()}
    assert sizes["dynamic"] < sizes["float16"] < sizes["float32"]
    assert errors["float32"] <= 1e-4 and errors["float32"] < errors["float16"] <= PARITY_TOLERANCE["float16"]


@pytest.mark.parametrize("fail_at", ["writing files", "moving the old bundle aside", "between the two renames"])
def test_interrupted_export_leaves_the_old_bundle(tiny_training_factory, tmp_path, monkeypatch, fail_at):
    outcome = tiny_training_factory()
    out = tmp_path / "bundle"
    shutil.copytree(outcome.export.path, out)
    old_id = load_bundle(out).bundle_id

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if fail_at == "writing files":
        monkeypatch.setattr(bundle_mod, "sha256_file", interrupt)
    else:
        real_rename = bundle_mod.os.rename
        victim = 0 if fail_at == "moving the old bundle aside" else 1  # source, or target, of the rename that fails
        fired = []

        def rename(a, b):
            if Path((a, b)[victim]) == out and not fired:
                fired.append(1)
                interrupt()
            real_rename(a, b)

        monkeypatch.setattr(bundle_mod.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(outcome.fit.model, config_of(outcome), outcome.dataset, out, name="new")
    monkeypatch.undo()
    assert load_bundle(out).bundle_id == old_id  # the old bundle, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temporary leftovers


def test_interrupted_first_export_leaves_nothing(tiny_training_factory, tmp_path, monkeypatch):
    outcome = tiny_training_factory()
    monkeypatch.setattr(bundle_mod, "sha256_file", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        export_bundle(outcome.fit.model, config_of(outcome), outcome.dataset, tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_training_is_reproducible_under_a_seed(tiny_audio, tmp_path):
    from murmur.trainer.dataset import FrameSettings, build_dataset
    from murmur.trainer.fit import train

    dataset = build_dataset([tiny_audio], FrameSettings(), cache_dir=tmp_path / "cache")
    cfg = ModelConfig(n_bins=dataset.settings.n_bins, units=16, dropout=0.3)
    a, b, c = (train(dataset, cfg, seed=seed, deadline_s=120, max_epochs=2) for seed in (7, 7, 8))
    losses = [[(r.loss, r.val_loss) for r in fit.history] for fit in (a, b, c)]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_time_budget_stops_training(tiny_audio, tmp_path):
    options = TrainOptions(units=8, layers=3, minutes=0.05, patience=10_000, cache_dir=tmp_path / "cache",
                           export_reserve_s=0)
    outcome = train_bundle(tiny_audio, tmp_path / "b", options)
    assert outcome.fit.stop_reason == "time budget reached"
    assert outcome.fit.train_seconds < 3.0 + 3 * max(r.seconds / r.epoch for r in outcome.fit.history)
    assert load_bundle(outcome.export.path).meta["training"]["stop_reason"] == "time budget reached"


def test_hop_and_sample_rate_are_settings_recorded_in_the_bundle(tiny_bundle_factory, tiny_bundle):
    path = tiny_bundle_factory(hop_length=256, sample_rate_hz=32000, max_epochs=1)
    bundle = load_bundle(path)
    assert (bundle.audio.sample_rate_hz, bundle.audio.hop_length, bundle.audio.n_fft) == (32000, 256, 2048)
    seconds = bundle.meta["training"]["data"]["total_duration_s"]
    assert bundle.n_seed_frames == 1 + int(seconds * 32000) // 256  # every frame of the resampled clip
    default = load_bundle(tiny_bundle)
    assert bundle.n_seed_frames > 1.3 * default.n_seed_frames  # 125 frames/s against 86


def test_seeds_are_cut_to_runs_when_the_bundle_would_pass_its_size_limit(tiny_training_factory, tmp_path):
    outcome = tiny_training_factory()
    limit = outcome.export.model_bytes + 400_000  # the PCA index takes ~135 kB of it; 5 s of frames ~450 kB
    result = export_bundle(outcome.fit.model, config_of(outcome), outcome.dataset, tmp_path / "small",
                           bundle_limit_bytes=limit, verify_legacy_runtime=False)
    bundle = load_bundle(result.path)
    total_frames = outcome.dataset.sources[0].n_frames
    assert result.bundle_bytes <= limit and 32 <= bundle.n_seed_frames < total_frames
    assert bundle.meta["seeds"]["frames"] == bundle.n_seed_frames
    # the kept run is real, contiguous training audio: frame k of the run is frame k of the source
    source = outcome.dataset.normalised(np.asarray(outcome.dataset.sources[0].log_mag[: bundle.n_seed_frames]))
    step = (bundle.hi - bundle.lo) / 255
    assert np.all(np.abs(bundle.seed_frames(0, bundle.n_seed_frames) - source) <= step * 0.51 + 1e-5)
