"""`python -m murmur.device play | render | list-devices`: thin command lines over the engine.

    play --bundle DIR [--device NAME] [--list-devices] [--set "name=value …"] [--seed N] [--seconds N]
         [--midi-learn CONFIG]
    render --bundle DIR --seconds N --out FILE.wav [--set "name=value …"] [--seed N]
    list-devices
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import signal
import sys
import threading
import time

from murmur.device.config_schema import VOCODER_PRESETS
from murmur.device.errors import DeviceError

log = logging.getLogger(__name__)


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m murmur.device {command}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if command == "list-devices":
        return parser
    parser.add_argument("--bundle", required=command == "render", help="bundle directory (written by `make train`)")
    parser.add_argument("--set", default="", metavar='"name=value …"',
                        help="sampler controls: fidelity, temperature, jump, position, spread, hold, gain_db")
    parser.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same audio")
    parser.add_argument("--volume-cap-db", type=float, default=0.0, help="the output never exceeds this, dBFS")
    parser.add_argument("--vocoder", default="auto", choices=VOCODER_PRESETS,
                        help="phase reconstruction, as [playback] vocoder: 'light' takes about 60 %% of the CPU time "
                             "and is a little more phasey; 'auto' (default) is full, and when playing live, light from "
                             "the moment the sound takes more than a third of a CPU core")
    if command == "render":
        parser.add_argument("--seconds", type=float, required=True, help="length of the render, seconds")
        parser.add_argument("--out", required=True, help="WAV file to write (16-bit mono)")
        from murmur.device.playback.engine import GENERATORS

        parser.add_argument("--generator", default="auto", choices=GENERATORS,
                            help="for comparisons: 'regression' plays the model's own frames even from a bundle "
                                 "with a frame bank; 'bank-no-model' picks cuts without the LSTM (default auto)")
    else:
        parser.add_argument("--device", default=None, help="output device: part of its name (see --list-devices)")
        parser.add_argument("--list-devices", action="store_true", help="list audio outputs and exit")
        parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
        parser.add_argument("--midi-learn", default=None, metavar="CONFIG",
                            help="take a USB MIDI controller with the [midi] table of this config file (created if "
                                 "missing); the key l, a control's key and a knob or pad turned map it there")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    return parser


def cli(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    args = _parser(command).parse_args(rest)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if command == "list-devices" or getattr(args, "list_devices", False):
            return _list_devices()
        if command == "render":
            return _render(args)
        return _play(args)
    except DeviceError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2


def _list_devices() -> int:
    from murmur.device.playback.sinks import format_devices, list_output_devices

    print("audio outputs (* = default); choose one with --device <part of the name>:")
    print(format_devices(list_output_devices()))
    return 0


def _store(args):
    from murmur.device.controls.values import Controls, ControlStore, parse_settings

    return ControlStore(Controls().replace(**parse_settings(args.set or "")))


def _render(args) -> int:
    import numpy as np

    from murmur.device.bundle import load_bundle
    from murmur.device.dsp.wavio import WavWriter
    from murmur.device.playback.engine import preset_vocoder_factory, render_blocks

    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        print(f"render: --seconds {args.seconds} must be a positive number", file=sys.stderr)
        return 2
    store = _store(args)
    bundle = load_bundle(args.bundle)
    started = time.perf_counter()
    peak = 0.0
    with WavWriter(args.out, bundle.audio.sample_rate_hz) as wav:  # streamed: an hour never sits in memory
        for block in render_blocks(bundle, args.seconds, controls=store, seed=args.seed,
                                   volume_cap_db=args.volume_cap_db, generator=args.generator,
                                   vocoder_factory=preset_vocoder_factory(args.vocoder)):
            wav.write(block)
            peak = max(peak, float(np.max(np.abs(block))))
    path = wav.path
    elapsed = time.perf_counter() - started
    print(f"wrote {path}: {args.seconds:g} s of {bundle.bundle_id} in {elapsed:.1f} s "
          f"({args.seconds / max(elapsed, 1e-9):.0f}x real time), peak {20 * math.log10(max(peak, 1e-12)):.1f} dBFS")
    return 0


def _midi_learn(path_text: str, store):
    """``play --midi-learn FILE``: the controller with FILE's [midi] table (any controller when it has none), and
    the keyboard's learn hook: arm learning for a control, write what is learnt into FILE (kept valid)."""
    from pathlib import Path

    from murmur.device.config_schema import read_file
    from murmur.device.controls.midi import MidiSettings, parse_midi, start_midi, table_text, write_learned

    path = Path(path_text)
    settings = parse_midi(read_file(path).get("midi", {}), str(path)) if path.exists() else MidiSettings()
    midi = start_midi(dataclasses.replace(settings, enabled=True), store)
    said = midi.reports()["midi"]
    print(f"MIDI: {said['port'] or 'waiting for ' + str(said['wanted'])}; learnt mappings go to {path}", file=sys.stderr)

    def learn(target: str) -> str:
        def learned(spec, event) -> None:
            if spec is None:
                print(f"\r\nMIDI learn: {event.kind} {event.number} cannot drive {target} (a knob for a control, a "
                      "pad for an action or hold); l to try again", file=sys.stderr)
                return
            try:
                write_learned(path, spec)
            except (DeviceError, OSError) as exc:
                print(f"\r\nMIDI learn: not written: {exc}", file=sys.stderr)
                return
            print("\r\nMIDI learn: " + table_text(spec).replace("\n", "  ") + f"-> {path}", file=sys.stderr)

        midi.learn(target, learned)
        return f"MIDI learn: now turn a knob or hit a pad for {target}"

    return midi, learn


def _play(args) -> int:
    from murmur.device.bundle import load_bundle
    from murmur.device.playback.engine import AUTO_LIGHT_LOAD, Engine, preset_vocoder_factory
    from murmur.device.playback.sinks import PyAudioSink

    if not args.bundle:
        print("play: --bundle DIR is required (or --list-devices)", file=sys.stderr)
        return 2
    store = _store(args)
    bundle = load_bundle(args.bundle)
    sink = PyAudioSink(args.device)
    engine = Engine(bundle, sink=sink, controls=store, seed=args.seed,
                    volume_cap_db=args.volume_cap_db, vocoder_factory=preset_vocoder_factory(args.vocoder),
                    vocoder_auto_load=AUTO_LIGHT_LOAD if args.vocoder == "auto" else None)
    done = threading.Event()
    engine.start()  # OutputDeviceError (with the list of outputs) comes from here
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    knobs = None
    midi = _midi_learn(args.midi_learn, store) if args.midi_learn else None
    try:
        if sys.stdin.isatty():
            try:
                from murmur.device.controls.keyboard import start_keyboard

                knobs = start_keyboard(store, learn=midi[1] if midi else None)
            except ImportError:
                log.info("keyboard controls not available")
        name = sink.device.name if sink.device else "?"
        print(f"playing {bundle.bundle_id} on {name!r}; Ctrl-C stops", file=sys.stderr)
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while not done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            done.wait(1.0)
            if engine.error is not None:
                raise engine.error
        stats = engine.stats
        print(f"stopped: {stats.frames_produced} frames, {stats.underruns} underruns", file=sys.stderr)
    finally:
        if knobs is not None:
            knobs.close()
        if midi is not None:
            midi[0].close()
        engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
