"""Shared fixtures. ``tiny_bundle`` is a real bundle: a tiny model trained through the real trainer pipeline on
~5 s of real audio and exported with dynamic-range quantisation (about 10-20 s, once per test session).

- ``tiny_audio`` (Path): ~5 s of real audio (the demo clip's start, else Debian's ALSA test sounds), a WAV file.
- ``tiny_bundle`` (Path): bundle directory, 3 LSTM layers x 32 units, dynamic-range, hop 512, 44.1 kHz.
- ``tiny_bundle_factory(**overrides) -> Path``: the same with ``trainer.pipeline.TrainOptions`` fields changed
  (e.g. ``quantisation="float16"``, ``hop_length=256``), cached per distinct overrides for the session.
- ``tiny_training_factory(**overrides)``: the whole ``TrainOutcome`` behind such a bundle (trainer tests).

Where there is no trainer (the Pi's architecture, `make test-arm64`), ``$MURMUR_TEST_BUNDLES`` names a directory of
the same bundles built beforehand on the laptop (``python -m tests.conftest OUT`` writes one per ``TINY_VARIANTS``
entry); ``tiny_bundle_factory`` takes them from there, so the device tests run on arm64 with real trained bundles.

Treat the returned directories as read-only (copy them with ``shutil.copytree`` to change anything).

A run leaves nothing outside pytest's temporary folder: ``TMPDIR`` and the trainer's frame cache (``$MURMUR_CACHE``)
point into it for the session, children included, and the run fails if it left new ``/tmp/murmur-*`` entries,
chromium profile folders in /tmp, or new entries of its own in the user's frame cache (~/.cache/murmur).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from murmur import REPO_ROOT as ROOT

DEMO_CLIP = ROOT / "trainer" / "demo" / "demo.ogg"
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
TINY_SECONDS = 5.0
TINY_OPTIONS = {"units": 32, "layers": 3, "max_epochs": 4, "minutes": 2.0, "seed": 0, "export_reserve_s": 0.0}
# The overrides device tests ask tiny_bundle_factory for, by name (prebuilt for the arm64 run).
TINY_VARIANTS: dict[str, dict] = {
    "default": {},
    "hop256-32k": {"hop_length": 256, "sample_rate_hz": 32000, "max_epochs": 1},
    "units16": {"units": 16, "max_epochs": 1},
}
PREBUILT_ENV = "MURMUR_TEST_BUNDLES"


# ---- A run leaves nothing behind outside pytest's temporary folder ----------------------------------------------

SYSTEM_TMP = Path(tempfile.gettempdir())  # read before the session points TMPDIR into pytest's folder
# What the suite's tools would leave in /tmp: the deploy tool's and the trainer's work dirs (murmur-deploy-*,
# murmur-savedmodel-*, …), and chromium's or chromedriver's profile and shared-memory folders.
TMP_LEFTOVERS = ("murmur-*", "org.chromium.Chromium.*", ".org.chromium.Chromium.*", "scoped_dir*")
USER_CACHE = Path(os.environ.get("MURMUR_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                  / "murmur")  # the frame cache the trainer uses outside the suite (trainer.dataset.default_cache_dir)
_present_at_start: set[Path] = set()
_session_temp: list[Path] = []  # pytest's base temporary folder, once the session fixture below has run


def _leftover_candidates() -> set[Path]:
    """Entries the suite could leave behind: /tmp names matching TMP_LEFTOVERS, and the user's frame-cache entries."""
    found = {path for pattern in TMP_LEFTOVERS for path in SYSTEM_TMP.glob(pattern)}
    if USER_CACHE.is_dir():
        found |= {path for path in USER_CACHE.iterdir() if path.suffix == ".json"}
    return found


def _made_by_this_suite(path: Path) -> bool:
    """A frame-cache entry counts when its source audio is in this session's temporary folder or this checkout:
    entries another process (a `make train` of the user's own recordings, another session) writes are not ours."""
    if path.parent != USER_CACHE:
        return True
    try:
        source = Path(json.loads(path.read_text())["source"]).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    roots = [ROOT, *(temp.resolve() for temp in _session_temp)]
    return any(source.is_relative_to(root) for root in roots)


def pytest_sessionstart(session: pytest.Session) -> None:
    _present_at_start.update(_leftover_candidates())


@pytest.fixture(scope="session", autouse=True)
def temporary_files_stay_in_pytest_folder(tmp_path_factory: pytest.TempPathFactory):
    """``TMPDIR`` and ``$MURMUR_CACHE`` (the trainer's frame cache) point into pytest's temporary folder for the
    session, in this process and in every child it starts; restored afterwards."""
    _session_temp.append(tmp_path_factory.getbasetemp())
    folders = {"TMPDIR": tmp_path_factory.mktemp("tmpdir", numbered=False),
               "MURMUR_CACHE": tmp_path_factory.mktemp("frame-cache", numbered=False)}
    saved = {name: os.environ.get(name) for name in folders}
    saved_tempdir = tempfile.tempdir
    os.environ.update({name: str(path) for name, path in folders.items()})
    tempfile.tempdir = str(folders["TMPDIR"])  # tempfile read TMPDIR once already; children read the environment
    yield folders
    tempfile.tempdir = saved_tempdir
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when it left something behind outside pytest's temporary folder (see the module docstring)."""
    if not _session_temp:  # no test ran
        return
    left = sorted(p for p in _leftover_candidates() - _present_at_start if p.exists() and _made_by_this_suite(p))
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = ("the run left these behind outside pytest's temporary folder (a tool that ignores TMPDIR or "
               "$MURMUR_CACHE, or a work dir a killed process could not remove); remove them and make the code "
               "that wrote them use tempfile / $MURMUR_CACHE (if another murmur process ran at the same time, they "
               "may be its own: run again):\n" + "\n".join(f"  {p}" for p in left))
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "left behind", red=True)
        reporter.write_line(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _tiny_audio_samples() -> tuple[np.ndarray, int]:
    """~5 s of real audio as (n_samples,) float32 and its rate: the demo clip's start, else ALSA's test sounds."""
    import soundfile

    if DEMO_CLIP.is_file():
        data, rate = soundfile.read(DEMO_CLIP, dtype="float32", always_2d=True, frames=int(TINY_SECONDS * 48000))
        data = data[: int(TINY_SECONDS * rate)]
        return data.mean(axis=1), rate
    parts, rate = [], None
    for path in sorted(ALSA_SOUNDS.glob("*.wav")):
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        parts.append(data.mean(axis=1))
        if sum(len(p) for p in parts) >= TINY_SECONDS * rate:
            break
    if not parts:
        pytest.skip(f"no real audio for the tiny bundle: neither {DEMO_CLIP} nor {ALSA_SOUNDS}/*.wav (apt alsa-utils)")
    return np.concatenate(parts)[: int(TINY_SECONDS * rate)], rate


@pytest.fixture(scope="session")
def tiny_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile

    samples, rate = _tiny_audio_samples()
    path = tmp_path_factory.mktemp("tiny_audio") / "tiny.wav"
    soundfile.write(path, samples, rate, subtype="FLOAT")
    return path


@pytest.fixture(scope="session")
def tiny_training_factory(tmp_path_factory: pytest.TempPathFactory, tiny_audio: Path):
    """``(**overrides) -> trainer.pipeline.TrainOutcome`` (dataset, fit result with the Keras model, export)."""
    from murmur.trainer.pipeline import TrainOptions, train_bundle

    made: dict[tuple, object] = {}
    cache_dir = tmp_path_factory.mktemp("tiny_cache")

    def make(**overrides):
        key = tuple(sorted(overrides.items()))
        if key not in made:
            options = TrainOptions(**dict(TINY_OPTIONS, cache_dir=cache_dir, name="tiny", **overrides))
            out = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
            made[key] = train_bundle(tiny_audio, out, options)
        return made[key]

    return make


def _prebuilt(overrides: dict) -> Path | None:
    """The prebuilt bundle for these overrides from $MURMUR_TEST_BUNDLES, if that is set and holds it."""
    folder = os.environ.get(PREBUILT_ENV)
    name = next((n for n, v in TINY_VARIANTS.items() if v == overrides), None)
    if not folder or name is None:
        return None
    path = Path(folder) / name
    if not (path / "bundle.json").is_file():
        raise FileNotFoundError(f"${PREBUILT_ENV}={folder} has no {name}/bundle.json; build them with "
                                f"`python -m tests.conftest {folder}` on the laptop")
    return path


LOCAL_CACHE = ROOT / "out" / "test-bundles"  # trained variants kept between runs, per code that makes a bundle
BUNDLE_CODE = ("trainer/*.py", "device/bundle.py", "device/dsp/frames.py")


def _bundle_code_stamp() -> str:
    from benchmarks.common import code_digest

    return code_digest([p for pattern in BUNDLE_CODE for p in ROOT.glob(pattern)])


def _cached(overrides: dict, stamp: str) -> Path | None:
    """A variant trained by an earlier run of this same bundle-making code (out/test-bundles), if it still loads."""
    name = next((n for n, v in TINY_VARIANTS.items() if v == overrides), None)
    path, stamp_file = LOCAL_CACHE / str(name), LOCAL_CACHE / f"{name}.stamp"
    if name is None or not (path / "bundle.json").is_file() or not stamp_file.is_file() or stamp_file.read_text() != stamp:
        return None
    from murmur.device.bundle import load_bundle
    from murmur.device.errors import BundleError

    try:
        load_bundle(path)
    except BundleError:
        return None
    return path


def _keep(overrides: dict, trained: Path, stamp: str) -> None:
    import shutil

    name = next((n for n, v in TINY_VARIANTS.items() if v == overrides), None)
    if name is None:
        return
    shutil.rmtree(LOCAL_CACHE / name, ignore_errors=True)
    shutil.copytree(trained, LOCAL_CACHE / name)
    (LOCAL_CACHE / f"{name}.stamp").write_text(stamp)


@pytest.fixture(scope="session")
def tiny_bundle_factory(request: pytest.FixtureRequest):
    """``(**overrides) -> Path``: prebuilt when $MURMUR_TEST_BUNDLES has it; else the copy an earlier run trained
    with the same trainer and bundle code (out/test-bundles: the inner loop skips ~15 s of training); else
    trained now (needs the trainer) and kept there."""
    stamps: list[str] = []

    def make(**overrides) -> Path:
        prebuilt = _prebuilt(overrides)
        if prebuilt is not None:
            return prebuilt
        if not stamps:
            stamps.append(_bundle_code_stamp())
        cached = _cached(overrides, stamps[0])
        if cached is not None:
            return cached
        path = request.getfixturevalue("tiny_training_factory")(**overrides).export.path
        _keep(overrides, path, stamps[0])
        return path

    return make


@pytest.fixture(scope="session")
def tiny_bundle(tiny_bundle_factory) -> Path:
    return tiny_bundle_factory()


def train_tiny(out: Path, *, name: str = "tiny", **overrides) -> Path:
    """The tiny bundle recipe outside pytest (trainer venv): ~5 s of real audio, TINY_OPTIONS with ``overrides``,
    into ``out``. Shared with the benchmarks (bench_deploy) and the arm64 run, so all use the same bundle."""
    import tempfile

    import soundfile

    from murmur.trainer.pipeline import TrainOptions, train_bundle

    samples, rate = _tiny_audio_samples()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tiny.wav"
        soundfile.write(wav, samples, rate, subtype="FLOAT")
        train_bundle(wav, out, TrainOptions(**dict(TINY_OPTIONS, cache_dir=Path(tmp) / "cache", name=name, **overrides)))
    return out


def build_prebuilt(out: Path) -> None:
    """Train every TINY_VARIANTS bundle into out/<name>/ (the laptop, trainer venv): what $MURMUR_TEST_BUNDLES
    points at where there is no trainer."""
    for variant, overrides in TINY_VARIANTS.items():
        train_tiny(out / variant, **overrides)
    write_reference_clips(out / REFERENCE_CLIPS)


REFERENCE_CLIPS = "vocoder_clips"  # under $MURMUR_TEST_BUNDLES: the vocoder tests' recordings, made on the laptop
REFERENCE_SECONDS = 4.0


def write_reference_clips(out: Path) -> None:
    """The vocoder tests' real recordings (the bells are rendered by fluidsynth: laptop only) as 16-bit WAVs, with
    their names in names.json, for the arm64 run."""
    import json
    import tempfile

    from benchmarks.bench_vocoder import reference_clips
    from murmur.device.dsp.wavio import write_wav

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clips = reference_clips(Path(tmp), seconds=REFERENCE_SECONDS)
    for i, (audio, rate) in enumerate(clips.values()):
        write_wav(out / f"{i}.wav", audio, rate)
    (out / "names.json").write_text(json.dumps(list(clips)))


def prebuilt_reference_clips() -> dict[str, tuple[np.ndarray, int]] | None:
    """The clips write_reference_clips left under $MURMUR_TEST_BUNDLES, or None (then the test makes them)."""
    import json

    from murmur.device.dsp.wavio import read_audio

    root = os.environ.get(PREBUILT_ENV)
    folder = Path(root) / REFERENCE_CLIPS if root else None
    if folder is None or not (folder / "names.json").is_file():
        return None
    names = json.loads((folder / "names.json").read_text())
    return {name: read_audio(folder / f"{i}.wav") for i, name in enumerate(names)}


if __name__ == "__main__":  # python -m tests.conftest OUT
    import sys

    build_prebuilt(Path(sys.argv[1]))
