"""Murmur trainer (laptop): audio files -> STFT-magnitude frames -> 3-layer LSTM -> verified TFLite bundle.

Pipeline modules, in data-flow order: ``audio`` (decode, check, mono, resample), ``dataset`` (frames, cache,
normalisation, windows by index), ``model`` (Keras sequence model, training loop), ``export`` (one-frame step
model, TFLite conversion, parity check, bundle), ``pipeline`` (the whole run under a time budget), ``preview``
(render with the device's own generator + picture), ``cli`` (``python -m murmur.trainer train|demo``).
"""
