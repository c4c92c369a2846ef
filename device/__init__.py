"""Murmur device side: plays a trained bundle forever (step model + sampler + phase vocoder + sink).

Imports only numpy and the standard library at package level; the TFLite runtime, PyAudio, gpiozero and
systemd are imported where their back-ends are built, so everything runs on a laptop and in CI.
"""

__version__ = "0.1.0"
