"""Murmur device side: plays a trained bundle forever (step model + generator + phase vocoder + sink).

Layers, each importing only those above it:

- ``errors``, ``files`` (atomic writes, hashing), ``bundle`` (the contract with the trainer), ``protocols`` (the
  typed seams between the parts), ``config_schema`` (every key of the config file, declared once);
- ``dsp``: frame maths (STFT, normalisation), the streaming vocoder, audio file I/O;
- ``generate``: the TFLite step model and runtime choice, the frame-bank generator, the regression generator;
- ``controls``: the control values the generator reads and the inputs that turn them (GPIO knobs, keyboard);
- ``playback``: the engine (generator → vocoder → gain → limiter → ring) and the sinks;
- ``appliance``: the systemd service — config, schedule, playlist, status, health, watchdog;
- ``cli``: ``python -m murmur.device play|render|resynth|serve|status|verify|keys``.

``testing`` holds the shipped stand-ins (fake step model, vocoder, engine, clock, MCP3008); no runtime module
imports it. Package level imports numpy and the standard library only; the TFLite runtime, PyAudio, gpiozero and
systemd are imported where their back-ends are built, so everything runs on a laptop and in CI.
"""

__version__ = "0.1.0"
