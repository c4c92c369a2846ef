"""The retrieval objective: train the LSTM to pick the real next frame out of the bank, as the device uses it.

On the device a cut never plays the model's frame: it projects the prediction onto the bank's PCA space and samples
a bank frame with probability ∝ exp(-d / τ), d the squared distance, τ = temperature × the bank's typical
nearest-neighbour distance (``murmur.device.generate.bank``). A model trained by MSE predicts the *average* next
frame, which sits in the middle of the bank and whose nearest frames are the common ones. This objective trains the
same output through the same projection with that same softmax, so the frame that really came next is the one the
cut is most likely to pick: cross-entropy of the true next frame against (a sample of) every frame of the bank.

Shapes: PCA ``mean`` (n_bins,), ``components`` (n_dims, n_bins), ``keys`` (n_frames, n_dims), all float32, model
units; distances in squared model units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from murmur.device.generate.bank import nearest_neighbour_scale

from .dataset import STFT_CHUNK_FRAMES, Dataset
from .export import bank_pca

NEGATIVES = 4096  # bank frames each training batch is scored against (the whole bank when it is smaller)


@dataclass(frozen=True)
class RetrievalSpace:
    """The bank's search space as the trainer sees it: PCA of every frame, every frame's coordinates, and τ."""

    mean: np.ndarray  # (n_bins,)
    components: np.ndarray  # (n_dims, n_bins)
    keys: np.ndarray  # (n_frames, n_dims): every frame of every file, held-out parts included
    typical_distance: float  # median squared distance from a frame to its nearest frame ≥ 3 frames away in time
    tau: float  # softmax temperature, squared distance: temperature × typical_distance

    @property
    def n_negatives(self) -> int:
        return min(NEGATIVES, self.keys.shape[0])


def all_frames(dataset: Dataset) -> np.ndarray:
    """Every frame of every source file in model units, (n_frames, n_bins) float32 (the bank's frames)."""
    parts = []
    for source in dataset.sources:
        for start in range(0, source.n_frames, STFT_CHUNK_FRAMES):
            parts.append(dataset.normalised(np.asarray(source.log_mag[start : start + STFT_CHUNK_FRAMES])))
    return np.concatenate(parts).astype(np.float32)


def build_space(dataset: Dataset, temperature: float) -> RetrievalSpace:
    """The search space of the bank this dataset makes, with τ = ``temperature`` × its typical distance."""
    frames_norm = all_frames(dataset)
    mean, components = bank_pca(frames_norm)
    keys = ((frames_norm - mean) @ components.T).astype(np.float32)
    typical = nearest_neighbour_scale(keys, np.einsum("ij,ij->i", keys, keys))
    return RetrievalSpace(mean, components, keys, typical, temperature * typical)


class RetrievalLoss:
    """Cross-entropy of the true next frame among bank frames, computed in TensorFlow inside the train step."""

    def __init__(self, space: RetrievalSpace):
        self.space = space
        self._mean = tf.constant(space.mean)
        self._projection = tf.constant(space.components.T)  # (n_bins, n_dims)
        self._inv_tau = tf.constant(1.0 / space.tau, tf.float32)

    def project(self, frames: tf.Tensor) -> tf.Tensor:
        """(..., n_bins) model units -> (N, n_dims) PCA coordinates, flattened over the leading axes."""
        flat = tf.reshape(frames, (-1, frames.shape[-1])) - self._mean
        return tf.matmul(flat, self._projection)

    def __call__(self, pred: tf.Tensor, target: tf.Tensor, negatives: tf.Tensor) -> tf.Tensor:
        """Mean cross-entropy (nats) over every (batch, time) step; ``negatives`` (M, n_dims) bank coordinates."""
        q = self.project(pred)
        k = self.project(target)
        positive = -tf.reduce_sum(tf.square(q - k), axis=-1) * self._inv_tau  # (N,)
        q_norms = tf.reduce_sum(tf.square(q), axis=-1, keepdims=True)
        n_norms = tf.reduce_sum(tf.square(negatives), axis=-1)[None, :]
        others = -(q_norms - 2.0 * tf.matmul(q, negatives, transpose_b=True) + n_norms) * self._inv_tau  # (N, M)
        logits = tf.concat([positive[:, None], others], axis=1)
        return tf.reduce_mean(tf.reduce_logsumexp(logits, axis=1) - positive)

    def sample_negatives(self, rng: np.random.Generator) -> np.ndarray:
        """(M, n_dims) coordinates of M bank frames drawn without replacement (all of them for a small bank)."""
        keys = self.space.keys
        if keys.shape[0] <= self.space.n_negatives:
            return keys
        return keys[rng.choice(keys.shape[0], size=self.space.n_negatives, replace=False)]


def held_out_cross_entropy(pred: np.ndarray, targets: np.ndarray, weights: np.ndarray, space: RetrievalSpace) -> float:
    """Weighted mean cross-entropy (nats) of each held-out true next frame among every frame of the bank.

    pred/targets (n, seq_len, n_bins) model units, weights (n, seq_len); the same score the device's cut samples by.
    """
    keep = weights.reshape(-1) > 0
    q = ((pred.reshape(-1, pred.shape[-1])[keep] - space.mean) @ space.components.T).astype(np.float64)
    k = ((targets.reshape(-1, targets.shape[-1])[keep] - space.mean) @ space.components.T).astype(np.float64)
    keys = space.keys.astype(np.float64)
    key_norms = np.einsum("ij,ij->i", keys, keys)
    total = 0.0
    for start in range(0, q.shape[0], 512):
        qb, kb = q[start : start + 512], k[start : start + 512]
        positive = -np.sum((qb - kb) ** 2, axis=1) / space.tau
        others = -(np.sum(qb * qb, axis=1)[:, None] - 2.0 * qb @ keys.T + key_norms[None, :]) / space.tau
        logits = np.concatenate([positive[:, None], others], axis=1)
        top = logits.max(axis=1)
        total += float(np.sum(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - positive))
    return total / max(int(keep.sum()), 1)
