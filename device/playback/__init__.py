"""Playback: the engine that turns a generator into sound, and where the sound goes.

- ``engine``: generator → vocoder → gain, fades, volume cap, soft limiter → a preallocated ring, on one producer
  thread; ``render`` runs the same pipeline offline;
- ``sinks``: PyAudio (a sound card, chosen by name), WAV file, null.
"""
