"""The Keras model: a stack of LSTMs that predicts the next frame as a change from the current one.

``next = scale ⊙ x + head(LSTM(x))`` with ``scale`` (n_bins,) initialised to 1 and ``head`` initialised to 0,
so an untrained model is "repeat the last frame" and training only has to learn what moves. Gaussian noise
on the input (training only) makes it robust to its own imperfect output when it runs free. Frames are in
model units (``murmur.device.dsp.frames.normalise``), so the MSE loss tracks the log-spectral distance squared.

The same layers, by name, make the one-frame step model the device runs (``build_step_model``). Why each of these
choices: docs/ARCHITECTURE.md §4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and training settings; ``asdict`` goes into bundle.json."""

    n_bins: int
    units: int = 256
    layers: int = 3
    input_noise: float = 0.5
    dropout: float = 0.0  # after each LSTM layer, training only (the step model has no dropout)
    learning_rate: float = 1e-3
    batch_size: int = 32
    seq_len: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


@keras.saving.register_keras_serializable(package="murmur")
class PerBinScale(keras.layers.Layer):
    """x (..., n_bins) -> x * scale, with a learned per-bin scale initialised to 1 (persistence at start)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def _head(units_out: int) -> keras.layers.Dense:
    return keras.layers.Dense(units_out, kernel_initializer="zeros", bias_initializer="zeros", name="head")


def build_sequence_model(cfg: ModelConfig) -> keras.Model:
    """Training model: (batch, time, n_bins) -> (batch, time, n_bins) next-frame prediction at every step."""
    x_in = keras.Input((None, cfg.n_bins), name="frames")
    x = keras.layers.GaussianNoise(cfg.input_noise, name="input_noise")(x_in)
    h = x
    for i in range(cfg.layers):
        h = keras.layers.LSTM(cfg.units, return_sequences=True, name=f"lstm{i}")(h)
        if cfg.dropout > 0:
            h = keras.layers.Dropout(cfg.dropout, name=f"dropout{i}")(h)
    delta = _head(cfg.n_bins)(h)
    kept = PerBinScale(name="scale")(x)
    y = keras.layers.Add(name="next_frame")([kept, delta])
    model = keras.Model(x_in, y, name="murmur_sequence")
    return model


def state_names(cfg: ModelConfig) -> tuple[list[str], list[str]]:
    """Signature names of the step model's state inputs and outputs, in feeding order (h0, c0, h1, c1, …)."""
    inputs = [f"{kind}{i}" for i in range(cfg.layers) for kind in ("h", "c")]
    return inputs, [f"{name}_out" for name in inputs]


def build_step_model(cfg: ModelConfig) -> keras.Model:
    """One-frame model: dict {frame (1, n_bins), h0, c0, … (1, units)} -> {next_frame, h0_out, c0_out, …}."""
    frame = keras.Input((cfg.n_bins,), batch_size=1, name="frame")
    in_names, out_names = state_names(cfg)
    states = {name: keras.Input((cfg.units,), batch_size=1, name=name) for name in in_names}
    outputs = {}
    h = frame
    for i in range(cfg.layers):
        cell = keras.layers.LSTMCell(cfg.units, name=f"lstm{i}")
        h, (new_h, new_c) = cell(h, [states[f"h{i}"], states[f"c{i}"]])
        outputs[f"h{i}_out"], outputs[f"c{i}_out"] = new_h, new_c
    delta = _head(cfg.n_bins)(h)
    outputs["next_frame"] = keras.layers.Add(name="next_frame")([PerBinScale(name="scale")(frame), delta])
    return keras.Model({"frame": frame, **states}, outputs, name="murmur_step")


def copy_weights(sequence: keras.Model, step: keras.Model, cfg: ModelConfig) -> None:
    """Sequence-model weights -> step model (LSTM layer -> LSTMCell, head, scale), by layer name."""
    for i in range(cfg.layers):
        step.get_layer(f"lstm{i}").set_weights(sequence.get_layer(f"lstm{i}").get_weights())
    step.get_layer("head").set_weights(sequence.get_layer("head").get_weights())
    step.get_layer("scale").set_weights(sequence.get_layer("scale").get_weights())
