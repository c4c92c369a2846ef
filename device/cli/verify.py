"""``python -m murmur.device verify --bundle DIR [--config FILE]``: prove this machine can play a bundle before it goes live.

Run by ``make deploy`` on the Pi from the new release, before anything switches: the device code imports, the
bundle loads (checksums, shapes), the TFLite runtime opens and steps the model, and one second renders offline
through the same generator and vocoder the service uses, giving finite, non-silent audio. Exit 0 only if all is
well; otherwise one line naming what failed and the fix, exit 1.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

SILENCE_DBFS = -90.0  # a rendered second quieter than this is not sound


def verify(bundle_dir: str, *, seconds: float = 1.0, config_path: str | None = None, seed: int = 0) -> dict:
    """Load, step and render ``bundle_dir`` (and validate ``config_path``); return the figures. Raises DeviceError."""
    from murmur.device.errors import BundleError
    from murmur.device.generate.step_model import open_bundle
    from murmur.device.playback.engine import render

    started = time.perf_counter()
    report: dict = {}
    if config_path:
        from murmur.device.appliance.config import load_config

        load_config(config_path)
        report["config"] = str(config_path)
    bundle, model = open_bundle(bundle_dir)
    report.update(bundle_id=bundle.bundle_id, runtime=getattr(model, "runtime_name", "?"))
    audio = render(bundle, seconds, seed=seed)
    expected = int(round(seconds * bundle.audio.sample_rate_hz))
    if audio.ndim != 1 or abs(len(audio) - expected) > bundle.audio.hop_length:
        raise BundleError(f"{bundle.path}: rendering {seconds} s gave {audio.shape} samples, expected about {expected}")
    if not np.all(np.isfinite(audio)):
        raise BundleError(f"{bundle.path}: the render holds NaN or infinite samples; re-export the bundle")
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    level_dbfs = 20.0 * np.log10(max(rms, 1e-12))
    if level_dbfs < SILENCE_DBFS:
        raise BundleError(f"{bundle.path}: one rendered second is silent ({level_dbfs:.0f} dBFS); re-train or re-export")
    report.update(level_dbfs=round(level_dbfs, 1), peak=round(float(np.max(np.abs(audio))), 3),
                  seconds=seconds, took_s=round(time.perf_counter() - started, 2))
    return report


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m murmur.device verify", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="bundle directory to check")
    parser.add_argument("--config", help="also validate this appliance config file (knob map, schedule, …)")
    parser.add_argument("--seconds", type=float, default=1.0, help="how much to render offline (default 1)")
    args = parser.parse_args(argv[1:])
    from murmur.device.errors import DeviceError

    try:
        report = verify(args.bundle, seconds=args.seconds, config_path=args.config)
    except (DeviceError, OSError) as exc:
        print(f"verify: FAILED: {exc}", file=sys.stderr)
        return 1
    details = ", ".join(f"{k} {v}" for k, v in report.items())
    print(f"verify: OK: {details}")
    return 0
