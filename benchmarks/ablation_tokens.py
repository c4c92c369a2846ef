"""Ablation rows "frame tokens": generators that replay REAL source frames chosen by a token model.

Each source frame (a log-magnitude STFT frame, as the trainer makes them) is assigned a token by k-means in a
PCA space of the trainer's normalised frames; a model of the token sequence then runs free, and every emitted
token is played as one of its real member frames (never a centroid: centroids sound blurred). When the frame
that follows the previously played frame in the recording belongs to the new token, it is preferred, so real
continuity survives wherever the token model agrees with the recording.

Two token models:

- ``generate_bigram``: a first-order Markov chain of counted transitions, mixed with the unigram;
- ``generate_token_lstm``: Embedding -> LSTM stack -> softmax over tokens, trained to fit the whole sequence
  within a time budget (no held-out early stopping), sampled one token at a time by a numpy step model.

``render_audio`` plays the chosen frames through the device's streaming vocoder. CLI::

    python -m benchmarks.ablation_tokens --clip PATH.wav --variant bigram|token_lstm --seconds 120 --out OUT.wav \
        [--seed 1] [--temperature 1.0] [--budget 90] [--figures]

It prints one JSON line: timings (fit, generation, render, in seconds), the codebook size, how the LSTM's
training stopped, how often the frame path plays the source's next frame (``continuation_pct``) and exact
replay of >= 1.5 s of consecutive source frames (``verbatim_pct``) and, with ``--figures``,
``trainer.soundcheck.evaluate`` of the render against the clip (whose ``replay_pct`` also counts near-copies:
a replayed TOKEN sequence played with other member frames is a near-copy that ``verbatim_pct`` does not see).

Shapes and units: ``log_mag`` is (n_frames, n_bins) float32 natural-log magnitudes ``log(|STFT| + 1e-5)``;
generators return (n_out, n_bins) float32 LINEAR magnitudes ``max(exp(log_mag) - 1e-5, 0)`` of source frames.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from murmur.device.dsp import frames
from murmur.device.dsp.vocoder import StreamingVocoder, vocode

LOG_FLOOR = 1e-5  # the trainer's log floor: log_mag = log(|STFT| + LOG_FLOOR)
MIN_TOKENS, MAX_TOKENS, FRAMES_PER_TOKEN = 64, 512, 8  # default K = clip(n_frames / 8, 64, 512)


# -- codebook ----------------------------------------------------------------------------------------------------


@dataclass
class Codebook:
    """Tokens of a source's frames.

    ``mean`` (n_bins,) and ``std`` are the trainer's normalisation (per-bin mean, one global std, in nepers);
    ``components`` (pca_dims, n_bins) and ``pca_mean`` (n_bins,) the PCA of the normalised frames;
    ``centroids`` (n_tokens, pca_dims) the k-means centres in PCA space (diagnostics only: no generator plays
    them); ``tokens`` (n_frames,) int64 the token of every source frame; ``members[k]`` the sorted source frame
    indices (int64) of token k, never empty. ``tokens[members[k]] == k`` for every k.
    """

    mean: np.ndarray
    std: float
    components: np.ndarray
    pca_mean: np.ndarray
    centroids: np.ndarray
    tokens: np.ndarray
    members: list[np.ndarray] = field(repr=False)

    @property
    def n_tokens(self) -> int:
        return len(self.members)

    @property
    def n_frames(self) -> int:
        return int(self.tokens.shape[0])


def default_n_tokens(n_frames: int) -> int:
    """K = n_frames / 8 clipped to [64, 512] (and never more than n_frames)."""
    return int(min(n_frames, np.clip(n_frames // FRAMES_PER_TOKEN, MIN_TOKENS, MAX_TOKENS)))


def fit_codebook(log_mag: np.ndarray, *, n_tokens: int | None = None, pca_dims: int = 64, seed: int = 0) -> Codebook:
    """(n_frames, n_bins) natural-log magnitudes -> Codebook (trainer normalisation, PCA, k-means).

    ``n_tokens`` defaults to ``default_n_tokens(n_frames)``; tokens k-means left empty are dropped and the rest
    renumbered, so ``Codebook.n_tokens`` may come out slightly below the request.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    log_mag = np.asarray(log_mag, dtype=np.float32)
    if log_mag.ndim != 2 or log_mag.shape[0] < 2:
        raise ValueError(f"log_mag must be (n_frames >= 2, n_bins), got {log_mag.shape}")
    n_frames, n_bins = log_mag.shape
    k = default_n_tokens(n_frames) if n_tokens is None else int(n_tokens)
    if not 1 <= k <= n_frames:
        raise ValueError(f"n_tokens={k} must be in 1..n_frames ({n_frames})")
    mean = log_mag.mean(axis=0, dtype=np.float64)
    std = float(np.sqrt(np.mean((log_mag - mean) ** 2, dtype=np.float64)))
    if not std > 0:
        raise ValueError("the frames never change (std 0): nothing to tokenise")
    mean = mean.astype(np.float32)
    normed = frames.normalise(log_mag, mean, std)
    dims = int(min(pca_dims, n_frames, n_bins))
    pca = PCA(n_components=dims, random_state=seed).fit(normed)
    reduced = pca.transform(normed).astype(np.float32)
    kmeans = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(reduced)
    labels = kmeans.labels_.astype(np.int64)
    used = np.unique(labels)  # drop empty clusters, renumber 0..len(used)-1
    renumber = np.full(k, -1, np.int64)
    renumber[used] = np.arange(used.shape[0])
    tokens = renumber[labels]
    order = np.argsort(tokens, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(tokens, minlength=used.shape[0]))[:-1])
    return Codebook(
        mean=mean,
        std=std,
        components=pca.components_.astype(np.float32),
        pca_mean=pca.mean_.astype(np.float32),
        centroids=kmeans.cluster_centers_[used].astype(np.float32),
        tokens=tokens,
        members=[m.astype(np.int64) for m in members],
    )


def linear_frames(log_mag: np.ndarray) -> np.ndarray:
    """(n, n_bins) natural-log magnitudes -> (n, n_bins) float32 linear magnitudes, ``max(exp(x) - 1e-5, 0)``."""
    return np.maximum(np.exp(np.asarray(log_mag, np.float32)) - np.float32(LOG_FLOOR), 0.0).astype(np.float32)


def _pick_member(codebook: Codebook, token: int, prev_frame: int, rng: np.random.Generator, continue_members: bool) -> int:
    """Source frame index to play for ``token``: ``prev_frame + 1`` if it is a member (and allowed), else random."""
    follow = prev_frame + 1
    if continue_members and 0 <= follow < codebook.n_frames and codebook.tokens[follow] == token:
        return follow
    members = codebook.members[token]
    return int(members[rng.integers(members.shape[0])])


def _sample(cdf: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn from a cumulative distribution (K,) whose last entry is 1 (up to rounding)."""
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), cdf.shape[0] - 1))


def _tempered(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (..., K) raised to 1/T and renormalised along the last axis (float64)."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    logp = np.log(np.maximum(p, 1e-300)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    q = np.exp(logp)
    return q / q.sum(axis=-1, keepdims=True)


# -- bigram chain ----------------------------------------------------------------------------------------------------


def bigram_matrix(codebook: Codebook, *, unigram_mix: float = 0.1) -> np.ndarray:
    """(K, K) float64 row-stochastic P(next | current): counted transitions mixed with the unigram.

    ``P = (1 - unigram_mix) * counts / row_sum + unigram_mix * unigram``; a token never followed by anything
    (only the last frame's) uses the unigram alone.
    """
    if not 0.0 <= unigram_mix <= 1.0:
        raise ValueError(f"unigram_mix={unigram_mix} must be in [0, 1]")
    k, tokens = codebook.n_tokens, codebook.tokens
    counts = np.zeros((k, k))
    np.add.at(counts, (tokens[:-1], tokens[1:]), 1.0)
    unigram = np.bincount(tokens, minlength=k) / tokens.shape[0]
    rows = counts.sum(axis=1, keepdims=True)
    chain = np.where(rows > 0, counts / np.maximum(rows, 1.0), unigram)
    return (1.0 - unigram_mix) * chain + unigram_mix * unigram


def bigram_frame_path(
    codebook: Codebook,
    n_out: int,
    *,
    seed: int,
    unigram_mix: float = 0.1,
    temperature: float = 1.0,
    continue_members: bool = True,
) -> np.ndarray:
    """Source frame indices (n_out,) int64 the bigram generator plays; it starts on source frame 0."""
    rng = np.random.default_rng(seed)
    cdfs = np.cumsum(_tempered(bigram_matrix(codebook, unigram_mix=unigram_mix), temperature), axis=1)
    path = np.empty(n_out, np.int64)
    frame = 0
    for i in range(n_out):
        if i:
            token = _sample(cdfs[codebook.tokens[frame]], rng)
            frame = _pick_member(codebook, token, frame, rng, continue_members)
        path[i] = frame
    return path


def generate_bigram(
    codebook: Codebook,
    log_mag: np.ndarray,
    n_out: int,
    *,
    seed: int,
    unigram_mix: float = 0.1,
    temperature: float = 1.0,
    continue_members: bool = True,
) -> np.ndarray:
    """Free-running bigram chain over tokens -> (n_out, n_bins) float32 linear magnitudes of real source frames.

    ``log_mag`` (n_frames, n_bins) are the frames the codebook was fitted on; see ``bigram_frame_path``.
    """
    path = bigram_frame_path(
        codebook, n_out, seed=seed, unigram_mix=unigram_mix, temperature=temperature, continue_members=continue_members
    )
    return linear_frames(np.asarray(log_mag)[path])


# -- token LSTM ----------------------------------------------------------------------------------------------------


@dataclass
class TokenLSTM:
    """A trained token LSTM as numpy weights, with how its training went.

    ``embedding`` (K, embed_dim); ``cells`` one (kernel (in, 4u), recurrent (u, 4u), bias (4u,)) per layer in
    Keras gate order i, f, c, o; ``dense`` (kernel (u, K), bias (K,)) giving logits. ``losses`` is the mean
    training cross-entropy (nats per token) of each epoch; ``stop_reason`` is "plateau", "fitted" or "budget".
    """

    embedding: np.ndarray
    cells: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    dense: tuple[np.ndarray, np.ndarray]
    losses: list[float]
    steps: int
    stop_reason: str
    train_seconds: float

    @property
    def units(self) -> int:
        return int(self.cells[0][1].shape[0])

    def initial_state(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zero (h, c) per layer, each (units,) float32."""
        return [(np.zeros(self.units, np.float32), np.zeros(self.units, np.float32)) for _ in self.cells]

    def step(self, token: int, state: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Feed one token, updating ``state`` in place -> next-token logits (K,) float32."""
        x = self.embedding[token]
        for i, (kernel, recurrent, bias) in enumerate(self.cells):
            h, c = state[i]
            z = x @ kernel + h @ recurrent + bias
            gi, gf, gc, go = np.split(z, 4)
            c = _sigmoid(gf) * c + _sigmoid(gi) * np.tanh(gc)
            h = _sigmoid(go) * np.tanh(c)
            state[i] = (h, c)
            x = h
        return x @ self.dense[0] + self.dense[1]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def train_token_lstm(
    codebook: Codebook,
    *,
    seed: int = 0,
    units: int = 256,
    layers: int = 2,
    embed_dim: int = 64,
    seq_len: int = 64,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seconds_budget: float = 90.0,
    plateau_rel: float = 0.01,
    patience: int = 3,
    fitted_loss: float = 0.05,
) -> TokenLSTM:
    """Fit Embedding -> ``layers`` x LSTM(units) -> Dense(K) softmax to the WHOLE token sequence (no held-out part).

    Random windows of ``seq_len`` tokens, ``batch_size`` per batch, Adam. An epoch is about one pass's worth of
    windows (10..200 batches). Stops when the epoch's training loss has not improved by ``plateau_rel``
    (relative) for ``patience`` epochs ("plateau"), falls below ``fitted_loss`` nats ("fitted"), or when the next
    batch would overrun ``seconds_budget`` ("budget"; TensorFlow's graph build counts against the budget).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    tokens = codebook.tokens
    k = codebook.n_tokens
    if tokens.shape[0] < seq_len + 2:
        raise ValueError(f"{tokens.shape[0]} frames are too few for windows of {seq_len} tokens; lower seq_len")
    started = time.monotonic()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(k, embed_dim, name="embedding")(inp)
    for i in range(layers):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm{i}")(x)
    logits = keras.layers.Dense(k, name="logits")(x)  # softmax in the loss and at sampling
    model = keras.Model(inp, logits)
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            out = model(xb, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yb, out, from_logits=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    n_starts = tokens.shape[0] - seq_len
    batches_per_epoch = int(np.clip(round(n_starts / batch_size), 10, 200))
    offsets = np.arange(seq_len + 1)
    losses: list[float] = []
    best, since, steps, batch_s = float("inf"), 0, 0, 0.0
    stop_reason = ""
    while not stop_reason:
        epoch_losses = []
        for _ in range(batches_per_epoch):
            if time.monotonic() - started + batch_s > seconds_budget:
                stop_reason = "budget"
                break
            t0 = time.monotonic()
            windows = tokens[rng.integers(0, n_starts, size=batch_size)[:, None] + offsets].astype(np.int32)
            epoch_losses.append(float(train_step(windows[:, :-1], windows[:, 1:])))
            steps += 1
            batch_s = time.monotonic() - t0 if steps > 1 else 0.0  # the first batch includes the graph build
        if not epoch_losses:
            break
        losses.append(float(np.mean(epoch_losses)))
        if stop_reason:
            break
        if losses[-1] < fitted_loss:
            stop_reason = "fitted"
        elif losses[-1] < best * (1.0 - plateau_rel):
            best, since = losses[-1], 0
        else:
            since += 1
            if since >= patience:
                stop_reason = "plateau"
    cells = [tuple(np.asarray(w, np.float32) for w in model.get_layer(f"lstm{i}").get_weights()) for i in range(layers)]
    dense = tuple(np.asarray(w, np.float32) for w in model.get_layer("logits").get_weights())
    embedding = np.asarray(model.get_layer("embedding").get_weights()[0], np.float32)
    return TokenLSTM(embedding, cells, dense, losses, steps, stop_reason or "budget", time.monotonic() - started)


def token_lstm_frame_path(
    net: TokenLSTM,
    codebook: Codebook,
    n_out: int,
    *,
    seed: int,
    temperature: float = 1.0,
    warm_tokens: int = 64,
    continue_members: bool = True,
) -> np.ndarray:
    """Source frame indices (n_out,) int64 played by the LSTM running free after ``warm_tokens`` real tokens.

    The state is carried token by token (no window is re-run); the output continues from the last warm frame.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    rng = np.random.default_rng(seed)
    state = net.initial_state()
    warm = int(min(warm_tokens, codebook.n_frames - 1))
    logits = None
    for token in codebook.tokens[:warm]:
        logits = net.step(int(token), state)
    if logits is None:
        raise ValueError("warm_tokens must be >= 1")
    frame = warm - 1
    path = np.empty(n_out, np.int64)
    for i in range(n_out):
        z = logits.astype(np.float64) / temperature
        p = np.exp(z - z.max())
        token = _sample(np.cumsum(p), rng)
        frame = _pick_member(codebook, token, frame, rng, continue_members)
        path[i] = frame
        logits = net.step(token, state)
    return path


def generate_token_lstm(
    codebook: Codebook,
    log_mag: np.ndarray,
    n_out: int,
    *,
    seed: int,
    units: int = 256,
    layers: int = 2,
    seconds_budget: float = 90.0,
    temperature: float = 1.0,
    continue_members: bool = True,
) -> np.ndarray:
    """Train a token LSTM on the codebook's sequence and run it free -> (n_out, n_bins) float32 linear magnitudes.

    See ``train_token_lstm`` (fit within ``seconds_budget``) and ``token_lstm_frame_path`` (warm on the first 64
    real tokens, sample at ``temperature``, play member frames with the continuity preference).
    """
    net = train_token_lstm(codebook, seed=seed, units=units, layers=layers, seconds_budget=seconds_budget)
    path = token_lstm_frame_path(
        net, codebook, n_out, seed=seed, temperature=temperature, continue_members=continue_members
    )
    return linear_frames(np.asarray(log_mag)[path])


# -- rendering and figures -------------------------------------------------------------------------------------------


def render_audio(magnitudes: np.ndarray, *, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """(n, n_bins) linear magnitudes -> (n * hop,) float32 audio through the device's StreamingVocoder.

    Latency removed and look-ahead flushed (``murmur.device.dsp.vocoder.vocode``); the level is left as it comes.
    """
    magnitudes = np.asarray(magnitudes, np.float32)
    vocoder = StreamingVocoder(n_fft=n_fft, hop_length=hop)
    audio, _ = vocode(magnitudes, vocoder, n_samples=magnitudes.shape[0] * hop)
    return audio


def verbatim_pct(path: np.ndarray, min_run: int) -> float:
    """Percentage of output frames that lie in a run of >= ``min_run`` consecutive source frames (path[i] = path[i-1] + 1).

    ``path`` (n_out,) source frame indices. Exact replay of the source for the generators here (they only play
    source frames); e.g. ``min_run = 129`` frames is 1.5 s at hop 512 and 44.1 kHz.
    """
    path = np.asarray(path)
    if path.shape[0] == 0:
        return 0.0
    breaks = np.flatnonzero(np.diff(path) != 1) + 1
    lengths = np.diff(np.concatenate([[0], breaks, [path.shape[0]]]))
    return float(100.0 * lengths[lengths >= min_run].sum() / path.shape[0])


# -- CLI --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablation_tokens", description=__doc__.split("\n")[0])
    parser.add_argument("--clip", required=True, help="source recording (WAV/FLAC/OGG/MP3/AIFF)")
    parser.add_argument("--variant", required=True, choices=("bigram", "token_lstm"))
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the render (default 120)")
    parser.add_argument("--out", required=True, help="16-bit WAV to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--budget", type=float, default=90.0, help="token LSTM training budget, seconds (default 90)")
    parser.add_argument("--figures", action="store_true",
                        help="add trainer.soundcheck figures of the render against the clip to the JSON line")
    return parser


def main(argv: list[str] | None = None) -> int:
    from murmur.device.dsp import wavio
    from murmur.trainer.audio import decode
    from murmur.trainer.dataset import FrameSettings

    args = build_parser().parse_args(argv)
    settings = FrameSettings()
    audio = decode(args.clip, settings.sample_rate_hz)
    mags = frames.stft_magnitudes(audio.samples, n_fft=settings.n_fft, hop_length=settings.hop_length)
    log_mag = frames.to_log(mags, settings.log_floor)
    n_out = math.ceil(args.seconds * settings.sample_rate_hz / settings.hop_length)
    report: dict = {"variant": args.variant, "clip": str(args.clip), "clip_s": round(audio.duration_s, 3),
                    "frames": int(log_mag.shape[0]), "seed": args.seed, "temperature": args.temperature}
    t0 = time.monotonic()
    codebook = fit_codebook(log_mag, seed=args.seed)
    report["codebook_size"] = codebook.n_tokens
    if args.variant == "bigram":
        report["fit_s"] = round(time.monotonic() - t0, 2)
        t1 = time.monotonic()
        path = bigram_frame_path(codebook, n_out, seed=args.seed, temperature=args.temperature)
    else:
        net = train_token_lstm(codebook, seed=args.seed, seconds_budget=args.budget)
        report["fit_s"] = round(time.monotonic() - t0, 2)
        report["train"] = {"steps": net.steps, "epochs": len(net.losses), "stop": net.stop_reason,
                           "seconds": round(net.train_seconds, 1), "epoch_losses_nats": [round(x, 3) for x in net.losses]}
        t1 = time.monotonic()
        path = token_lstm_frame_path(net, codebook, n_out, seed=args.seed, temperature=args.temperature)
    magnitudes = linear_frames(log_mag[path])
    report["generation_s"] = round(time.monotonic() - t1, 2)
    t2 = time.monotonic()
    rendered = render_audio(magnitudes, n_fft=settings.n_fft, hop=settings.hop_length)
    report["render_s"] = round(time.monotonic() - t2, 2)
    wavio.write_wav(args.out, rendered, settings.sample_rate_hz)
    hop_s = settings.hop_length / settings.sample_rate_hz
    report.update(
        out=str(Path(args.out)),
        seconds=round(rendered.shape[0] / settings.sample_rate_hz, 3),
        continuation_pct=round(float(100.0 * np.mean(np.diff(path) == 1)), 2),
        verbatim_1500ms_pct=round(verbatim_pct(path, round(1.5 / hop_s)), 2),
        peak=round(float(np.max(np.abs(rendered))), 4),
    )
    if args.figures:
        from murmur.trainer import soundcheck

        report["figures"] = soundcheck.evaluate(audio.samples, rendered, settings.sample_rate_hz).to_dict()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
