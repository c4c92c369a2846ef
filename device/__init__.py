"""Murmur device side: plays a trained bundle forever (step model + generator + phase vocoder + sink).

Layers, each importing only those above it: the top-level modules (``errors``, ``files``, ``bundle``, ``protocols``,
``config_schema``), then ``dsp``, ``generate``, ``controls``, ``playback``, ``appliance``, ``cli``; ``testing`` holds
the shipped stand-ins, which no runtime module imports (docs/ARCHITECTURE.md §0). Package level imports numpy and
the standard library only; the TFLite runtime, PyAudio, gpiozero and systemd are imported where their back-ends are
built, so everything runs on a laptop and in CI.
"""

__version__ = "0.1.0"
