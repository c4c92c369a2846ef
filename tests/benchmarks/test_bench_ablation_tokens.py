"""benchmarks.ablation_tokens: codebook invariants, real-frame generators, the numpy LSTM step against Keras."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import ablation_tokens as tok

pytestmark = pytest.mark.slow  # fits a Keras token model


def _log_mag(n_frames: int = 640, n_bins: int = 33, seed: int = 0) -> np.ndarray:
    """A repeating 4-note 'melody' of noisy spectral peaks: (n_frames, n_bins) float32 natural-log magnitudes."""
    rng = np.random.default_rng(seed)
    note = (np.arange(n_frames) // 20) % 4
    bins = np.arange(n_bins)
    peaks = np.exp(-0.5 * ((bins[None, :] - (4 + 6 * note[:, None])) / 1.5) ** 2)
    mags = peaks + 0.05 * rng.random((n_frames, n_bins))
    return np.log(mags + tok.LOG_FLOOR).astype(np.float32)


@pytest.fixture(scope="module")
def material():
    log_mag = _log_mag()
    return log_mag, tok.fit_codebook(log_mag, seed=0)


def test_codebook_partitions_the_frames(material):
    log_mag, book = material
    assert book.n_tokens == tok.default_n_tokens(log_mag.shape[0]) == 80  # 640 / 8
    assert book.tokens.shape == (640,)
    every = np.sort(np.concatenate(book.members))
    np.testing.assert_array_equal(every, np.arange(640))
    for k, members in enumerate(book.members):
        assert members.size and np.all(book.tokens[members] == k)
    assert tok.default_n_tokens(100) == 64 and tok.default_n_tokens(10**6) == 512 and tok.default_n_tokens(30) == 30


def test_bigram_plays_real_frames_reproducibly(material):
    log_mag, book = material
    out = tok.generate_bigram(book, log_mag, 300, seed=3)
    assert out.shape == (300, log_mag.shape[1]) and out.dtype == np.float32
    path = tok.bigram_frame_path(book, 300, seed=3)
    np.testing.assert_array_equal(out, tok.linear_frames(log_mag)[path])
    np.testing.assert_array_equal(path, tok.bigram_frame_path(book, 300, seed=3))
    assert not np.array_equal(path, tok.bigram_frame_path(book, 300, seed=4))
    loose = tok.bigram_frame_path(book, 300, seed=3, continue_members=False)
    assert np.mean(np.diff(path) == 1) > np.mean(np.diff(loose) == 1) + 0.1  # continuity preference


def test_verbatim_pct_counts_long_runs_only():
    path = np.array([5, 6, 7, 8, 0, 1, 9, 10, 11])
    assert tok.verbatim_pct(path, 3) == pytest.approx(100 * 7 / 9)
    assert tok.verbatim_pct(path, 5) == 0.0


def test_render_audio_length():
    mags = tok.linear_frames(np.full((6, 1025), -2.0, np.float32))
    audio = tok.render_audio(mags)
    assert audio.shape == (6 * 512,) and audio.dtype == np.float32 and np.all(np.isfinite(audio))


def test_numpy_step_matches_keras_and_sampling_runs(material):
    import keras

    log_mag, book = material
    net = tok.train_token_lstm(book, seed=0, units=12, layers=2, embed_dim=8, seq_len=16, batch_size=8,
                               seconds_budget=3.0)
    assert net.steps >= 1 and net.stop_reason in ("plateau", "fitted", "budget")
    inp = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(book.n_tokens, 8, name="embedding")(inp)
    for i in range(2):
        x = keras.layers.LSTM(12, return_sequences=True, name=f"lstm{i}")(x)
    model = keras.Model(inp, keras.layers.Dense(book.n_tokens, name="logits")(x))
    model.get_layer("embedding").set_weights([net.embedding])
    for i, cell in enumerate(net.cells):
        model.get_layer(f"lstm{i}").set_weights(list(cell))
    model.get_layer("logits").set_weights(list(net.dense))
    seq = book.tokens[:20]
    expected = model.predict(seq[None].astype(np.int32), verbose=0)[0]
    state = net.initial_state()
    got = np.stack([net.step(int(t), state) for t in seq])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    path = tok.token_lstm_frame_path(net, book, 50, seed=1, warm_tokens=16)
    assert path.shape == (50,) and path.min() >= 0 and path.max() < 640
