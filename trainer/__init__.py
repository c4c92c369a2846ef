"""Murmur trainer (laptop): audio files -> STFT-magnitude frames -> 3-layer LSTM -> verified TFLite bundle.

Pipeline modules, in data-flow order: ``audio`` (decode, check, mono, resample), ``dataset`` (frames, cache,
normalisation, windows by index), ``model`` (the Keras sequence model and its one-frame step model), ``fit`` (the
training loop under a time budget), ``export`` (TFLite conversion, parity checks, bundle), ``pipeline`` (the whole
run), ``preview`` (render with the device's own generator + picture), ``liveness`` and ``soundcheck`` (the figures
it prints), ``cli`` (``python -m murmur.trainer train|demo``, options in ``options``). ``tflite_runtime_probe`` runs
in the legacy-runtime venv. The design: docs/ARCHITECTURE.md §4 and §9.
"""
