"""Regenerates demo.ogg: the Minuet in G (BWV Anh. 114, 1725, public domain) played by FluidR3 GM instruments.

Writes a standard MIDI file with the standard library, renders it with fluidsynth through the MIT-licensed
FluidR3_GM soundfont (Debian packages `fluidsynth` and `fluid-soundfont-gm`) and encodes 30 s of mono
44.1 kHz Ogg Vorbis with sox. Run: `python trainer/demo/make_demo.py` (needs fluidsynth and sox).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TICKS_PER_BEAT = 480
TEMPO_US_PER_BEAT = 600_000  # 100 beats per minute: 16 bars of 3/4 take 28.8 s

# Note names -> MIDI numbers for the octaves used here.
NOTE = {name: base + 12 * (octave + 1) for octave in range(2, 7) for name, base in
        (("C", 0), ("D", 2), ("E", 4), ("F#", 6), ("G", 7), ("A", 9), ("B", 11))
        for name in [f"{name}{octave}"]}

# (note, beats) per bar; the right hand of bars 1-16 and a simplified left hand.
Bars = list[list[tuple[str, float]]]  # per bar: (note name, beats)
MELODY_A: Bars = [
    [("D5", 1), ("G4", .5), ("A4", .5), ("B4", .5), ("C5", .5)],
    [("D5", 1), ("G4", 1), ("G4", 1)],
    [("E5", 1), ("C5", .5), ("D5", .5), ("E5", .5), ("F#5", .5)],
    [("G5", 1), ("G4", 1), ("G4", 1)],
    [("C5", 1), ("D5", .5), ("C5", .5), ("B4", .5), ("A4", .5)],
    [("B4", 1), ("C5", .5), ("B4", .5), ("A4", .5), ("G4", .5)],
]
MELODY: Bars = MELODY_A + [
    [("F#4", 1), ("G4", .5), ("A4", .5), ("B4", .5), ("G4", .5)],
    [("A4", 3)],
] + MELODY_A + [
    [("A4", 1), ("B4", .5), ("A4", .5), ("G4", .5), ("F#4", .5)],
    [("G4", 3)],
]
BASS_A: Bars = [[("G3", 2), ("A3", 1)], [("B3", 3)], [("C4", 3)], [("B3", 3)], [("A3", 3)], [("G3", 3)]]
BASS: Bars = BASS_A + [[("D4", 1), ("B3", 1), ("G3", 1)], [("D4", 1), ("D3", 1), ("C4", 1)]] + BASS_A + [
    [("D4", 1), ("B3", 1), ("D3", 1)], [("G3", 2), ("G2", 1)]]


def varlen(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def track(events: list[tuple[int, bytes]]) -> bytes:
    """A MIDI track chunk from (absolute tick, message) pairs."""
    data, now = b"", 0
    for tick, message in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        data += varlen(tick - now) + message
        now = tick
    data += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(data)) + data


def voice(bars: Bars, channel: int, program: int, velocity: int, first_bar: int = 0,
          last_bar: int = 16) -> list[tuple[int, bytes]]:
    """Note events of one instrument playing bars[first_bar:last_bar] (legato: 95 % of each note)."""
    events = [(0, bytes([0xC0 | channel, program]))]
    tick = first_bar * 3 * TICKS_PER_BEAT
    for bar in bars[first_bar:last_bar]:
        for name, beats in bar:
            length = int(beats * TICKS_PER_BEAT)
            events.append((tick, bytes([0x90 | channel, NOTE[name], velocity])))
            events.append((tick + int(length * 0.95), bytes([0x80 | channel, NOTE[name], 0])))
            tick += length
    return events


def midi_file() -> bytes:
    """Piano melody throughout, cello bass, a violin doubling the melody an octave down in the second half."""
    tempo = [(0, b"\xff\x51\x03" + TEMPO_US_PER_BEAT.to_bytes(3, "big"))]
    octave_down: Bars = [[(n[:-1] + str(int(n[-1]) - 1), b) for n, b in bar] for bar in MELODY]
    tracks = [
        track(tempo),
        track(voice(MELODY, channel=0, program=0, velocity=90)),  # acoustic grand piano
        track(voice(BASS, channel=1, program=42, velocity=70)),  # cello
        track(voice(octave_down, channel=2, program=40, velocity=60, first_bar=8)),  # violin
    ]
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), TICKS_PER_BEAT)
    return header + b"".join(tracks)


def main() -> int:
    if not SOUNDFONT.exists():
        print(f"{SOUNDFONT} is missing: sudo apt-get install fluidsynth fluid-soundfont-gm sox", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "minuet.mid", Path(tmp) / "minuet.wav"
        mid.write_bytes(midi_file())
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", "44100", "-F", str(wav), str(SOUNDFONT), str(mid)],
                       check=True, capture_output=True)
        subprocess.run(["sox", str(wav), "-c", "1", "-r", "44100", str(HERE / "demo.ogg"), "trim", "0", "30",
                        "gain", "-n", "-1", "fade", "0", "30", "0.5"], check=True)
    print(f"wrote {HERE / 'demo.ogg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
