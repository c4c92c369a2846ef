"""The retrieval objective: it rewards pointing at the true next frame, and the TF and numpy forms agree."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from murmur.device.generate.bank import nearest_neighbour_scale  # noqa: E402
from murmur.trainer import retrieval  # noqa: E402
from murmur.trainer.export import bank_pca  # noqa: E402


def _space(n_frames: int = 300, n_bins: int = 40, temperature: float = 0.3) -> retrieval.RetrievalSpace:
    rng = np.random.default_rng(0)
    frames = np.cumsum(rng.standard_normal((n_frames, n_bins)).astype(np.float32) * 0.3, axis=0)  # a slow walk
    mean, components = bank_pca(frames, n_dims=8)
    keys = ((frames - mean) @ components.T).astype(np.float32)
    typical = nearest_neighbour_scale(keys, np.einsum("ij,ij->i", keys, keys))
    return retrieval.RetrievalSpace(mean, components, keys, typical, temperature * typical), frames


def test_pointing_at_the_true_next_frame_costs_less_than_pointing_elsewhere():
    space, frames = _space()
    loss = retrieval.RetrievalLoss(space)
    targets = frames[None, 100:110]  # (1, 10, n_bins)
    elsewhere = frames[None, 200:210]
    negatives = tf.constant(space.keys)
    right = float(loss(tf.constant(targets), tf.constant(targets), negatives))
    wrong = float(loss(tf.constant(elsewhere), tf.constant(targets), negatives))
    assert right < wrong - 5.0
    # the true frame is also among the negatives, so a perfect guess still shares its mass with itself and neighbours
    assert right > np.log(2.0) - 1e-4


def test_the_held_out_score_is_the_training_loss_over_the_whole_bank():
    space, frames = _space()
    loss = retrieval.RetrievalLoss(space)
    rng = np.random.default_rng(1)
    pred = (frames[None, 50:70] + rng.standard_normal((1, 20, frames.shape[1])).astype(np.float32) * 0.5)
    targets = frames[None, 51:71]
    in_tf = float(loss(tf.constant(pred), tf.constant(targets), tf.constant(space.keys)))
    weights = np.ones((1, 20), np.float32)
    in_numpy = retrieval.held_out_cross_entropy(pred, targets, weights, space)
    assert in_numpy == pytest.approx(in_tf, rel=1e-4)
    weights[0, 10:] = 0.0  # only the weighted steps count
    first_half = retrieval.held_out_cross_entropy(pred, targets, weights, space)
    assert first_half == pytest.approx(float(loss(tf.constant(pred[:, :10]), tf.constant(targets[:, :10]),
                                                   tf.constant(space.keys))), rel=1e-4)


def test_negatives_are_the_whole_bank_when_it_is_small_and_a_sample_when_it_is_not():
    space, _ = _space(n_frames=300)
    loss = retrieval.RetrievalLoss(space)
    assert loss.sample_negatives(np.random.default_rng(0)) is space.keys
    big = retrieval.RetrievalSpace(space.mean, space.components, np.repeat(space.keys, 20, axis=0),
                                   space.typical_distance, space.tau)
    sample = retrieval.RetrievalLoss(big).sample_negatives(np.random.default_rng(0))
    assert sample.shape == (retrieval.NEGATIVES, space.keys.shape[1])
