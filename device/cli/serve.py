"""``python -m murmur.device serve --config FILE``: the appliance as a systemd service (deploy/murmur.service); with
``--check``, validate the config and every bundle it names, then exit. Builds the real engine, sink and knobs for
``murmur.device.appliance.service.Service`` and wires SIGHUP (reload) and SIGTERM/SIGINT (stop) to it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from murmur.device.appliance import health
from murmur.device.appliance.config import DEFAULT_PATH, Config, load_config
from murmur.device.appliance.service import Service
from murmur.device.appliance.systemd import Notifier, pin_import_paths, setup_logging, venv_id
from murmur.device.bundle import Bundle
from murmur.device.controls.values import ControlStore
from murmur.device.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    from murmur.device.controls.base import Knobs
    from murmur.device.playback.engine import Engine

log = logging.getLogger("murmur.service")

BUFFER_FRAMES = 4  # audio computed ahead (46 ms at hop 512/44.1 kHz): one more than the engine's default for
# margin, small enough that a knob still reaches the sound in <= 100 ms; the engine grows it after underruns
SINK_ENV = "MURMUR_SINK"  # "pyaudio" (default), "null", "wav:PATH": picks the sink without editing the config


def validate_bundle(path: Path) -> Bundle:
    """Load and check a bundle (files, checksums, settings) and its model. Raises BundleError."""
    from murmur.device.generate.step_model import open_bundle

    return open_bundle(path)[0]


def make_sink(config: Config, spec: str | None = None):
    """The output: PyAudio on the configured device name by default; ``MURMUR_SINK``/``--sink`` = 'null' or
    'wav:PATH' for tests and dry runs."""
    from murmur.device.playback import sinks

    spec = spec if spec is not None else os.environ.get(SINK_ENV, "pyaudio")
    if spec == "null":  # paced like a sound card
        return sinks.NullSink(realtime=True)
    if spec == "null-fast":  # as fast as the generator runs
        return sinks.NullSink(realtime=False)
    if spec.startswith("wav:"):
        return sinks.WavSink(spec[4:])
    if spec not in ("", "pyaudio"):
        raise ConfigError(f"{SINK_ENV}={spec!r}: use pyaudio, null, null-fast or wav:PATH")
    return sinks.PyAudioSink(config.playback.output_device)


def default_engine_factory(bundle: Bundle, *, config: Config, store: ControlStore, on_frame, sink_spec=None) -> Engine:
    """The real engine on the configured sink."""
    from murmur.device.playback.engine import AUTO_LIGHT_LOAD, Engine, preset_vocoder_factory

    preset = config.playback.vocoder
    return Engine(bundle, sink=make_sink(config, sink_spec), controls=store, volume_cap_db=config.playback.volume_cap_db,
                  on_frame=on_frame, buffer_frames=BUFFER_FRAMES, vocoder_factory=preset_vocoder_factory(preset),
                  vocoder_auto_load=AUTO_LIGHT_LOAD if preset == "auto" else None)


def default_knobs_factory(config: Config, store: ControlStore) -> Knobs | None:
    """The control sources the config asks for, as one handle: the GPIO knobs of its knob map, the OSC listener
    when ``[osc]`` is on, the USB MIDI controller when ``[midi]`` is, the link to the room of Pis when ``[room]`` is (None when there is none of them); never
    stops the sound if one fails."""
    from murmur.device.controls.base import KnobSet
    from murmur.device.controls.gpio import start_knobs
    from murmur.device.controls.osc import start_osc

    parts: list[Knobs] = []
    if config.knobs is not None:
        try:
            parts.append(start_knobs(config.knobs, store, on_error=lambda message: log.warning("knobs: %s", message)))
        except Exception as exc:  # GPIO missing/busy: play without knobs rather than not at all
            log.warning("knobs: could not start (%s); playing on the [sampler] values", exc)
    if config.osc.enabled:
        parts.append(start_osc(config.osc, store))  # reports its own problems; never raises for a socket
    if config.midi.enabled:
        from murmur.device.controls.midi import start_midi

        parts.append(start_midi(config.midi, store))  # waits for the controller; never raises for a missing one
    if config.room.enabled:
        from murmur.device.appliance.room import join_room

        parts.append(join_room(config.room, store))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else KnobSet(parts)


def cli(argv: list[str]) -> int:
    """``python -m murmur.device serve --config FILE``: run the appliance until SIGTERM; SIGHUP reloads."""
    parser = argparse.ArgumentParser(prog=f"python -m murmur.device {argv[0] if argv else 'serve'}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"config file (TOML; default {DEFAULT_PATH})")
    parser.add_argument("--status-file", type=Path, default=None,
                        help=f"status JSON (default ${health.STATUS_ENV}, $RUNTIME_DIRECTORY/status.json or {health.DEFAULT_STATUS_FILE})")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the playlist position is kept (default $STATE_DIRECTORY; none: not kept)")
    parser.add_argument("--sink", default=None, help=f"pyaudio (default), null or wav:PATH (also ${SINK_ENV})")
    parser.add_argument("--check", action="store_true", help="validate the config and its bundles, then exit")
    args = parser.parse_args(argv[1:])
    pin_import_paths()
    venv_id()  # resolved (and cached) now, before a deploy can move `current`
    setup_logging()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        Notifier().notify(f"STATUS=config error: {str(exc)[:300]}")
        return 1
    if args.check:
        failed = 0
        for path in config.playback.bundles:
            try:
                bundle = validate_bundle(path)
                print(f"ok   {path}  ({bundle.bundle_id})")
            except DeviceError as exc:
                failed += 1
                print(f"BAD  {path}: {exc}")
        print(f"config {args.config}: {'ok' if not failed else f'{failed} bad bundle(s)'}")
        return 1 if failed else 0
    status_file = args.status_file or health.status_path()
    state_dir = args.state_dir or (Path(os.environ["STATE_DIRECTORY"].split(":")[0]) if os.environ.get("STATE_DIRECTORY") else None)
    sink_spec = args.sink

    def engine_factory(bundle, **kwargs):
        return default_engine_factory(bundle, sink_spec=sink_spec, **kwargs)

    service = Service(config, config_path=args.config, engine_factory=engine_factory,
                      knobs_factory=default_knobs_factory, status_file=status_file, state_dir=state_dir)
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
    signal.signal(signal.SIGINT, lambda *_: service.request_stop())
    return service.run()
