"""The sound evaluation corpus: six clips cut from Debian 12 packages at bench time, never committed.

``ensure_corpus()`` fetches each clip's package with ``apt-get download`` into ``out/corpus/debs/`` (running
``apt-get update`` once if the download fails and we are root), unpacks it with ``dpkg-deb -x`` into
``out/corpus/pkgroot/``, decodes the file(s) with soundfile (a file inside a ``.pk3`` zip archive is read with
zipfile), mixes down to mono (mean of the channels), cuts the excerpt, resamples to 44.1 kHz with soxr (HQ) when
the source rate differs, and writes ``out/corpus/<name>.wav`` (44.1 kHz, 16-bit PCM, mono) with a
``<name>.json`` stamp beside it (the clip's definition, frame count and SHA-256). A clip whose WAV and stamp
match is not made again.

``python -m benchmarks.corpus`` makes them all and prints the table.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from murmur import REPO_ROOT as ROOT
from murmur.device.files import PendingFile, replace_file, sha256_file

CORPUS_DIR = ROOT / "out" / "corpus"
DEBS_DIR = CORPUS_DIR / "debs"
PKGROOT = CORPUS_DIR / "pkgroot"
SAMPLE_RATE_HZ = 44100
WESNOTH_MUSIC = "/usr/share/games/wesnoth/1.16/data/core/music"
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-"


class CorpusError(RuntimeError):
    """A clip cannot be made; the message names the package or file and the fix."""


@dataclass(frozen=True)
class Clip:
    """One corpus clip: ``files`` (paths inside ``package``, decoded and concatenated in order; with ``member``,
    the file is a zip archive and ``member`` the path inside it), excerpt ``offset_s`` … ``offset_s +
    duration_s`` (None = to the end) of the concatenation."""

    name: str
    kind: str
    package: str
    files: tuple[str, ...]
    offset_s: float
    duration_s: float | None
    licence: str
    credit: str
    member: str | None = None
    note: str = ""

    @property
    def path(self) -> Path:
        """The clip's WAV: out/corpus/<name>.wav."""
        return CORPUS_DIR / f"{self.name}.wav"

    @property
    def stamp(self) -> Path:
        return CORPUS_DIR / f"{self.name}.json"

    @property
    def where(self) -> str:
        """Human-readable location in the package."""
        if self.member:
            return f"{self.files[0]} → {self.member}"
        if len(self.files) > 1:
            head = os.path.commonprefix(list(self.files))
            tail = os.path.commonprefix([f[::-1] for f in self.files])[::-1]
            tail = tail[tail.find(".") :] if "." in tail else ""  # the extension only
            return f"{head}{{{','.join(f[len(head) : len(f) - len(tail)] for f in self.files)}}}{tail}"
        return self.files[0]

    @property
    def excerpt(self) -> str:
        end = "end" if self.duration_s is None else f"{self.offset_s + self.duration_s:g} s"
        return f"{self.offset_s:g} s – {end}"


CLIPS: tuple[Clip, ...] = (
    Clip("folk", "ensemble (folk band)", "wesnoth-1.16-music", (f"{WESNOTH_MUSIC}/traveling_minstrels.ogg",),
         20.0, 30.0, "GPL-2+", "“Traveling Minstrels”, Mattias Westlund (2008), The Battle for Wesnoth OST"),
    Clip("orchestra", "ensemble (orchestra)", "wesnoth-1.16-music", (f"{WESNOTH_MUSIC}/the_dangerous_symphony.ogg",),
         30.0, 30.0, "GPL-2+", "“The Dangerous Symphony”, Gianmarco Leone (2008), The Battle for Wesnoth OST"),
    Clip("guitar", "solo instrument (distorted electric guitar)", "fretsonfire-songs-muldjord",
         ("/usr/share/games/fretsonfire/data/songs/muldjord/chaos_god/guitar.ogg",), 30.0, 45.0, "CC BY-SA 3.0",
         "“Chaos God”, guitar stem, El Senator / Muldjord (www.muldjord.com)",
         note="the stem is silent for its first 9 s; 30–75 s is -21.0 dBFS RMS, 0.3 dB below its loudest 45 s"),
    Clip("voice", "speech", "pocketsphinx-testdata",
         tuple(f"{LIBRIVOX}{n}.wav" for n in ("0870", "0880", "0890", "0920", "0930")), 0.0, None,
         "public domain (LibriVox)", "Jane Austen, “Sense and Sensibility” ch. 1, LibriVox reading (five utterances)",
         note="16 kHz, resampled to 44.1 kHz; the package's copyright file says BSD-2 for all its files, the "
         "recordings themselves are LibriVox's public-domain audio"),
    Clip("night", "ambience (field texture)", "ufoai-sound", ("/usr/share/games/ufoai/base/0snd.pk3",), 0.0, 60.0,
         "GPL-2+", "ufo_night_atm.ogg, UFO: Alien Invasion (Axis REC, Martin Gerhardy, Nexuiz, Max Neave, Michael "
         "Quinn per the package's copyright file)", member="sound/ambience/ufo_night_atm.ogg",
         note="a quiet texture: -41 dBFS RMS"),
    Clip("piece", "a whole piece (≥ 3 min)", "wesnoth-1.16-music", (f"{WESNOTH_MUSIC}/wanderer.ogg",), 0.0, 200.0,
         "GPL-2+", "“Still Another Wanderer”, Timothy Pinkham (2006), The Battle for Wesnoth OST",
         note="the track is 262 s; its first 200 s"),
)
BY_NAME = {c.name: c for c in CLIPS}


def _definition(clip: Clip) -> dict:
    return {k: v for k, v in asdict(clip).items() if k not in ("licence", "credit", "note")} | {
        "sample_rate_hz": SAMPLE_RATE_HZ}


def _is_made(clip: Clip) -> bool:
    import soundfile

    if not (clip.path.is_file() and clip.stamp.is_file()):
        return False
    try:
        stamp = json.loads(clip.stamp.read_text())
        info = soundfile.info(clip.path)
    except (ValueError, RuntimeError, OSError):
        return False
    definition = json.loads(json.dumps(_definition(clip)))  # tuples -> lists, as read back
    return (stamp.get("definition") == definition and info.samplerate == SAMPLE_RATE_HZ and info.channels == 1
            and info.frames == stamp.get("frames"))


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise CorpusError(f"`{cmd[0]}` is not installed: the corpus is cut from Debian packages, so it needs a "
                          "Debian or Ubuntu machine with apt-get and dpkg-deb") from exc


def _deb(package: str) -> Path:
    """The package's .deb in out/corpus/debs/, downloaded with `apt-get download` if missing."""
    DEBS_DIR.mkdir(parents=True, exist_ok=True)
    found = sorted(DEBS_DIR.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    result = _run(["apt-get", "download", package], cwd=DEBS_DIR)
    if result.returncode != 0 and os.geteuid() == 0:
        print(f"corpus: apt-get download {package} failed; running apt-get update once", file=sys.stderr)
        _run(["apt-get", "update"])
        result = _run(["apt-get", "download", package], cwd=DEBS_DIR)
    found = sorted(DEBS_DIR.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not found:
        raise CorpusError(
            f"cannot download the Debian package {package} (needed by the sound corpus): "
            f"{(result.stderr or result.stdout).strip()[-500:]}\nfix: `sudo apt-get update`, then "
            f"`cd {DEBS_DIR} && apt-get download {package}` (Debian 12 main), or copy {package}_*.deb there by hand"
        )
    return found[-1]


def _unpacked(clip: Clip) -> list[Path]:
    """The clip's files under out/corpus/pkgroot/, unpacking its package with `dpkg-deb -x` when one is missing."""
    paths = [PKGROOT / f.lstrip("/") for f in clip.files]
    if all(p.is_file() for p in paths):
        return paths
    deb = _deb(clip.package)
    PKGROOT.mkdir(parents=True, exist_ok=True)
    result = _run(["dpkg-deb", "-x", str(deb), str(PKGROOT)])
    if result.returncode != 0:
        raise CorpusError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()[-500:]}\nfix: delete {deb} (it may be "
                          "truncated) and run again")
    missing = [f for f, p in zip(clip.files, paths, strict=True) if not p.is_file()]
    if missing:
        raise CorpusError(f"{clip.package} ({deb.name}) holds no {', '.join(missing)}; the package changed: check "
                          f"`dpkg -c {deb}` and update the clip {clip.name!r} in benchmarks/corpus.py")
    return paths


def _decode(path: Path, member: str | None) -> tuple[np.ndarray, int]:
    """A file (or a zip member) -> ((n,) float32 mono, its sample rate)."""
    import soundfile

    if member is not None:
        try:
            with zipfile.ZipFile(path) as archive:
                data = io.BytesIO(archive.read(member))
        except (KeyError, zipfile.BadZipFile) as exc:
            raise CorpusError(f"{path}: cannot read {member} from the archive ({exc}); check "
                              f"`python -m zipfile -l {path}` and update benchmarks/corpus.py") from exc
        source = data
    else:
        source = path
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, ValueError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise CorpusError(f"{path}{':' + member if member else ''}: cannot be decoded ({exc})") from exc
    return samples.mean(axis=1), int(rate)


def make_clip(clip: Clip) -> Path:
    """Cut one clip into out/corpus/<name>.wav (44.1 kHz 16-bit mono) and its stamp; return the WAV path."""
    import soundfile

    parts, rate = [], None
    for path in _unpacked(clip):
        samples, file_rate = _decode(path, clip.member)
        if rate is not None and file_rate != rate:
            raise CorpusError(f"{path}: {file_rate} Hz, the clip's other files are {rate} Hz")
        parts.append(samples)
        rate = file_rate
    audio = np.concatenate(parts)
    start = int(round(clip.offset_s * rate))
    stop = audio.shape[0] if clip.duration_s is None else start + int(round(clip.duration_s * rate))
    if stop > audio.shape[0]:
        raise CorpusError(f"{clip.name}: the excerpt ends at {stop / rate:.1f} s but {clip.files[-1]} is only "
                          f"{audio.shape[0] / rate:.1f} s long; shorten duration_s in benchmarks/corpus.py")
    audio = audio[start:stop]
    if rate != SAMPLE_RATE_HZ:
        import soxr

        audio = soxr.resample(audio, rate, SAMPLE_RATE_HZ, quality="HQ").astype(np.float32)
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    with PendingFile(clip.path) as pending:
        soundfile.write(pending.file, np.clip(audio, -1.0, 1.0), SAMPLE_RATE_HZ, subtype="PCM_16", format="WAV")
    stamp = {"definition": _definition(clip), "frames": int(audio.shape[0]), "sha256": sha256_file(clip.path),
             "source_rate_hz": rate}
    replace_file(clip.stamp, json.dumps(stamp, indent=1) + "\n")
    return clip.path


def ensure_corpus(names: list[str] | tuple[str, ...] | None = None) -> list[Clip]:
    """The clips (all, or those named), each made under out/corpus/ if it is not there yet. Raises CorpusError."""
    unknown = sorted(set(names or ()) - set(BY_NAME))
    if unknown:
        raise CorpusError(f"unknown corpus clip(s) {', '.join(unknown)}; the clips are {', '.join(BY_NAME)}")
    clips = [BY_NAME[n] for n in names] if names else list(CLIPS)
    for clip in clips:
        if not _is_made(clip):
            print(f"corpus: making {clip.path} from {clip.package}", file=sys.stderr, flush=True)
            make_clip(clip)
    return clips


def duration_s(clip: Clip) -> float:
    import soundfile

    return soundfile.info(clip.path).duration


def corpus_table(clips: list[Clip] | tuple[Clip, ...] = CLIPS) -> str:
    """Markdown table of the clips: name, kind, package, file, excerpt (and length when made), licence, credit."""
    rows = ["| clip | kind | Debian package | file in the package | excerpt | licence | credit |",
            "|---|---|---|---|---|---|---|"]
    for c in clips:
        length = f" ({duration_s(c):.1f} s)" if c.path.is_file() else ""
        note = f"; {c.note}" if c.note else ""
        rows.append(f"| `{c.name}` | {c.kind} | `{c.package}` | `{c.where}` | {c.excerpt}{length}{note} | "
                    f"{c.licence} | {c.credit} |")
    return "\n".join(rows)


if __name__ == "__main__":
    try:
        made = ensure_corpus(sys.argv[1:] or None)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(corpus_table(made))
