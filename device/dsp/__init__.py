"""Pure signal processing shared by trainer and device.

- ``frames``: STFT magnitudes, the log-magnitude normalisation, the analysis window (numpy only, matches librosa);
- ``vocoder``: streaming phase reconstruction (RTISI-LA), one magnitude frame in, one hop of audio out;
- ``wavio``: read any common audio format to mono float32, write 16-bit PCM WAV;
- ``measures``: the one definition of dead air and movement, for the device, the trainer and the benchmarks.
"""
