"""Training loop: random windows by index, loss on every step, early stopping on held-out data, a time budget.

A plain loop over a compiled train step (rather than ``model.fit``) so the caller gets a callback per batch
for the progress bar, the time budget is checked per batch, and Ctrl-C leaves with nothing half-written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from .dataset import Dataset, lsd_db
from .model import ModelConfig, build_sequence_model
from .retrieval import RetrievalLoss, RetrievalSpace, held_out_cross_entropy

MAX_BATCHES_PER_EPOCH = 64  # long inputs: an "epoch" is at most this many batches, so validation stays frequent


@dataclass
class EpochRecord:
    epoch: int
    loss: float  # training loss: MSE in model units, or retrieval cross-entropy (nats) + MSE
    val_loss: float  # held-out teacher-forced MSE (model units), or retrieval cross-entropy (nats)
    val_lsd_db: float
    seconds: float  # since training started


@dataclass
class FitResult:
    model: keras.Model
    history: list[EpochRecord]
    best_epoch: int
    stop_reason: str
    train_seconds: float
    baseline_lsd_db: float  # "repeat the last frame" on the same held-out targets
    best_val_lsd_db: float = field(default=float("nan"))


@dataclass
class Progress:
    """What the progress callback sees after each batch."""

    epoch: int
    batch: int
    batches_per_epoch: int
    loss: float
    val_loss: float | None
    best_val_loss: float | None
    elapsed_s: float
    deadline_s: float  # training must stop by this many seconds after it started


def batches_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """About one pass over every train frame at stride seq_len/8 (a 30-s clip: ~2 300 frames, ~290 windows)."""
    windows = max(batch_size, dataset.n_train_frames // 8)
    return int(min(MAX_BATCHES_PER_EPOCH, max(1, round(windows / batch_size))))


def validation_loss(model: keras.Model, dataset: Dataset, batch_size: int = 64) -> tuple[float, np.ndarray]:
    """Teacher-forced held-out MSE (weighted as in ValidationSet) -> (mse, predictions)."""
    val = dataset.validation
    pred = model.predict(val.inputs, batch_size=batch_size, verbose=0)
    per_step = np.mean((pred - val.targets) ** 2, axis=-1)
    return float(np.sum(per_step * val.weights) / np.sum(val.weights)), pred


def train(
    dataset: Dataset,
    cfg: ModelConfig,
    *,
    seed: int,
    deadline_s: float,
    patience: int = 8,
    max_epochs: int = 1000,
    init_scale: bool = False,
    restore_best: bool = True,
    on_progress: Callable[[Progress], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    retrieval: RetrievalSpace | None = None,
) -> FitResult:
    """Train a fresh model for at most ``deadline_s`` seconds; return it with the best held-out weights restored.

    With ``retrieval`` the loss is the cross-entropy of the true next frame among the bank's frames
    (``trainer/retrieval.py``) plus the MSE, and early stopping follows the held-out cross-entropy.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_sequence_model(cfg)
    if init_scale:
        # start from the least-squares "shrink toward the mean" predictor: better teacher-forced LSD, but the
        # model then drones when it runs free (movement ratio 0.3-0.4 against 1.0 from plain persistence; see
        # benchmarks/bench_trainer.py), so it is off by default
        model.get_layer("scale").set_weights([dataset.persistence_scale()])
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    optimizer.build(model.trainable_variables)
    variables = model.trainable_variables

    retrieval_loss = RetrievalLoss(retrieval) if retrieval is not None else None

    @tf.function(reduce_retracing=True)
    def train_step(x, y, negatives):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            loss = tf.reduce_mean(tf.square(pred - y))
            if retrieval_loss is not None:
                loss = loss + retrieval_loss(pred, y, negatives)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    no_negatives = np.zeros((1, 1), np.float32)

    val = dataset.validation
    baseline = lsd_db(val.inputs, val.targets, val.weights, dataset.std)
    n_batches = batches_per_epoch(dataset, cfg.batch_size)
    x = np.empty((cfg.batch_size, cfg.seq_len, cfg.n_bins), np.float32)
    y = np.empty_like(x)
    history: list[EpochRecord] = []
    best_val, best_epoch, best_weights = float("inf"), 0, model.get_weights()
    stop_reason = f"max epochs ({max_epochs})"
    started = time.monotonic()
    epoch_seconds = 0.0
    for epoch in range(1, max_epochs + 1):
        epoch_started = time.monotonic()
        losses = []
        for batch in range(n_batches):
            dataset.sample_batch(rng, cfg.batch_size, x, y)
            negatives = retrieval_loss.sample_negatives(rng) if retrieval_loss is not None else no_negatives
            losses.append(float(train_step(x, y, negatives)))
            if on_progress is not None:
                on_progress(Progress(epoch, batch + 1, n_batches, float(np.mean(losses)),
                                     history[-1].val_loss if history else None,
                                     best_val if history else None, time.monotonic() - started, deadline_s))
        val_loss, pred = validation_loss(model, dataset)
        if retrieval is not None:
            val_loss = held_out_cross_entropy(pred, val.targets, val.weights, retrieval)
        record = EpochRecord(epoch, float(np.mean(losses)), val_loss,
                             lsd_db(pred, val.targets, val.weights, dataset.std), time.monotonic() - started)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if not np.isfinite(record.loss):
            stop_reason = "training diverged (loss is not finite); best earlier weights kept"
            break
        if val_loss < best_val:
            best_val, best_epoch, best_weights = val_loss, epoch, model.get_weights()
        elif epoch - best_epoch >= patience:
            stop_reason = f"early stopping (no held-out improvement for {patience} epochs)"
            break
        epoch_seconds = time.monotonic() - epoch_started
        if time.monotonic() - started + epoch_seconds > deadline_s:
            stop_reason = "time budget reached"
            break
    if restore_best:
        model.set_weights(best_weights)
    else:
        best_epoch = history[-1].epoch if history else 0
    best_lsd = next((r.val_lsd_db for r in history if r.epoch == best_epoch), float("nan"))
    return FitResult(model, history, best_epoch, stop_reason, time.monotonic() - started, baseline, best_lsd)
