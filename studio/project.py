"""A studio project on disk: the decoded recordings, the regions chosen to learn from, and every training run.

    PROJECT/studio.json          regions per recording (the "palette"), the last settings
    PROJECT/material/NAME.wav    each recording, decoded (mono, 16-bit, the trainer's sample rate)
    PROJECT/material/NAME.json   its overview for the page: peaks and a small spectrogram
    PROJECT/runs/RUN/            one finished training: bundle/, bundle-preview.wav/png, run.json, log.txt

Names that reach the disk are made here (``safe_name``) and looked up among what exists, so nothing a request
says can point outside the project folder.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from murmur.device.files import replace_file

from .errors import StudioError

PROJECT_FILE = "studio.json"
MAX_NAME = 80
OVERVIEW_COLUMNS = 800  # waveform peaks and spectrogram columns sent to the page
OVERVIEW_BANDS = 64  # spectrogram rows, log-spaced 40 Hz … Nyquist
MIN_REGION_S = 1.0  # the trainer needs a few hundred frames; shorter regions are refused with the reason


def safe_name(filename: str) -> str:
    """A file stem that is safe on every system: letters, digits, '.', '_', '-'; never empty, never hidden.

    Only the last path component counts, so "../../x.wav" and "C:\\x.wav" become "x"; dots inside the stem stay
    ("take.2.wav" is "take.2"), runs of them become one. A name this returns is a fixed point (``is_safe_name``),
    so a recording named by an upload can always be found, shown, trained and removed by that name.
    """
    base = re.split(r"[\\/]", filename)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", stem))
    return cleaned[:MAX_NAME].strip("._-") or "recording"


def is_safe_name(name: str) -> bool:
    """True for the names ``safe_name`` makes: [A-Za-z0-9._-], no leading or trailing '.', '_' or '-', no '..'."""
    return bool(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", name)) and ".." not in name \
        and len(name) <= MAX_NAME


@dataclass
class Recording:
    name: str
    seconds: float
    sample_rate_hz: int
    regions: list[tuple[float, float]]  # (start_s, end_s) to learn from; empty = excluded

    def as_json(self) -> dict:
        return {"name": self.name, "seconds": round(self.seconds, 3), "sample_rate_hz": self.sample_rate_hz,
                "regions": [[round(a, 3), round(b, 3)] for a, b in self.regions]}


class Project:
    """One folder; every method is safe to call from the server's threads (one lock around studio.json)."""

    def __init__(self, root: Path, *, sample_rate_hz: int):
        self.root = Path(root).resolve()
        self.sample_rate_hz = sample_rate_hz
        self.material = self.root / "material"
        self.runs = self.root / "runs"
        self.incoming = self.root / ".incoming"
        for folder in (self.material, self.runs, self.incoming):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # -- the project file ---------------------------------------------------------------------------------------
    def _read(self) -> dict:
        path = self.root / PROJECT_FILE
        if not path.is_file():
            return {"regions": {}, "settings": {}}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StudioError(f"{path}: not readable as JSON ({exc}); fix or delete it (the recordings stay)") from exc
        data.setdefault("regions", {})
        data.setdefault("settings", {})
        return data

    def _write(self, data: dict) -> None:
        replace_file(self.root / PROJECT_FILE, json.dumps(data, indent=1))

    def settings(self) -> dict:
        with self._lock:
            return dict(self._read()["settings"])

    def save_settings(self, settings: dict) -> None:
        with self._lock:
            data = self._read()
            data["settings"] = settings
            self._write(data)

    # -- recordings ---------------------------------------------------------------------------------------------
    def recording_path(self, name: str) -> Path:
        """The WAV of an existing recording; StudioError if there is none of that name (never a path outside)."""
        if not is_safe_name(name) or not (self.material / f"{name}.wav").is_file():
            raise StudioError(f"no recording named {name!r} in {self.material}")
        return self.material / f"{name}.wav"

    def recordings(self) -> list[Recording]:
        import soundfile

        with self._lock:
            regions = self._read()["regions"]
        out = []
        for wav in sorted(self.material.glob("*.wav")):
            info = soundfile.info(str(wav))
            seconds = info.frames / info.samplerate
            chosen = regions.get(wav.stem, [[0.0, seconds]])
            out.append(Recording(wav.stem, seconds, int(info.samplerate), [(float(a), float(b)) for a, b in chosen]))
        return out

    def add_recording(self, filename: str, upload: Path) -> Recording:
        """Decode ``upload`` (any format the trainer reads), keep it as NAME.wav, draw its overview; the upload
        file is deleted either way. A file that does not decode is refused with the trainer's reason."""
        from murmur.device.dsp.wavio import write_wav
        from murmur.device.errors import DeviceError
        from murmur.trainer.audio import decode

        try:
            suffix = Path(filename).suffix.lower()
            named = upload.with_suffix(suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".wav")
            upload.rename(named)
            upload = named
            try:
                decoded = decode(upload, self.sample_rate_hz)
            except DeviceError as exc:
                raise StudioError(str(exc).replace(str(upload), filename)) from exc
            name = self._free_name(safe_name(filename))
            overview = make_overview(decoded.samples, self.sample_rate_hz)
            replace_file(self.material / f"{name}.json", json.dumps(overview))
            write_wav(self.material / f"{name}.wav", decoded.samples, self.sample_rate_hz)  # atomic
        finally:
            upload.unlink(missing_ok=True)
        seconds = decoded.samples.shape[0] / self.sample_rate_hz
        return Recording(name, seconds, self.sample_rate_hz, [(0.0, seconds)])

    def _free_name(self, name: str) -> str:
        candidate, n = name, 2
        while (self.material / f"{candidate}.wav").exists():
            candidate, n = f"{name}-{n}", n + 1
        return candidate

    def overview(self, name: str) -> dict:
        path = self.recording_path(name).with_suffix(".json")
        if not path.is_file():  # a WAV put into material/ by hand
            import soundfile

            samples, rate = soundfile.read(str(path.with_suffix(".wav")), dtype="float32")
            replace_file(path, json.dumps(make_overview(samples.reshape(samples.shape[0], -1).mean(axis=1), rate)))
        return json.loads(path.read_text())

    def remove_recording(self, name: str) -> None:
        path = self.recording_path(name)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink()
        with self._lock:
            data = self._read()
            data["regions"].pop(name, None)
            self._write(data)

    def set_regions(self, name: str, regions: list) -> Recording:
        """Save the regions to learn from (seconds); they are clipped to the recording, sorted and merged."""
        import soundfile

        info = soundfile.info(str(self.recording_path(name)))
        seconds = info.frames / info.samplerate
        clean: list[list[float]] = []
        try:
            pairs = sorted((float(a), float(b)) for a, b in regions)
        except (TypeError, ValueError) as exc:
            raise StudioError(f"regions for {name!r} must be [[start_s, end_s], …] in seconds, got {regions!r}") from exc
        for a, b in pairs:
            a, b = max(0.0, min(a, seconds)), max(0.0, min(b, seconds))
            if not (np.isfinite(a) and np.isfinite(b)) or b - a <= 0:
                continue
            if clean and a <= clean[-1][1]:
                clean[-1][1] = max(clean[-1][1], b)
            else:
                clean.append([a, b])
        with self._lock:
            data = self._read()
            data["regions"][name] = clean
            self._write(data)
        return Recording(name, seconds, int(info.samplerate), [(a, b) for a, b in clean])

    def write_selection(self, folder: Path) -> tuple[list[dict], float]:
        """Write every selected region as its own WAV into ``folder`` (the trainer's DATA) -> (selection, seconds).

        StudioError when nothing is selected or every region is too short to learn from.
        """
        import soundfile

        from murmur.device.dsp.wavio import write_wav

        folder.mkdir(parents=True, exist_ok=True)
        selection, total = [], 0.0
        for rec in self.recordings():
            for i, (a, b) in enumerate(rec.regions):
                if b - a < MIN_REGION_S:
                    continue
                samples, rate = soundfile.read(str(self.recording_path(rec.name)), dtype="float32",
                                               start=int(a * rec.sample_rate_hz), stop=int(b * rec.sample_rate_hz))
                write_wav(folder / f"{rec.name}-{i + 1}.wav", samples, rate)
                selection.append({"recording": rec.name, "start_s": round(a, 3), "end_s": round(b, 3)})
                total += b - a
        if not selection:
            raise StudioError("nothing to learn from: add a recording and select at least one region of "
                              f"{MIN_REGION_S:g} s or more")
        return selection, total

    # -- runs -----------------------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """The folder of a finished run; StudioError if there is none of that id."""
        if not re.fullmatch(r"run-[0-9]{8}-[0-9]{6}(-[0-9]+)?", run_id) or not (self.runs / run_id / "run.json").is_file():
            raise StudioError(f"no training run {run_id!r} in {self.runs}")
        return self.runs / run_id

    def list_runs(self) -> list[dict]:
        out = []
        for path in sorted(self.runs.glob("run-*/run.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out


def make_overview(samples: np.ndarray, rate: int) -> dict:
    """Peaks (min/max per column) and a log-frequency spectrogram (uint8, dB over 80 dB) for the page's canvas."""
    n = samples.shape[0]
    cols = min(OVERVIEW_COLUMNS, max(1, n // 64))
    edges = np.linspace(0, n, cols + 1).astype(np.int64)
    mins = np.array([samples[a:b].min() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:], strict=True)])
    maxs = np.array([samples[a:b].max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:], strict=True)])
    n_fft = 1024
    window = np.hanning(n_fft).astype(np.float32)
    centres = np.linspace(0, max(0, n - n_fft), cols).astype(np.int64)
    frames = np.stack([np.pad(samples[c:c + n_fft], (0, max(0, n_fft - samples[c:c + n_fft].shape[0]))) for c in centres])
    mag = np.abs(np.fft.rfft(frames * window, axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    band_edges = np.geomspace(40.0, rate / 2, OVERVIEW_BANDS + 1)
    bands = np.stack([mag[:, (freqs >= lo) & (freqs < hi)].max(axis=1, initial=0.0)
                      for lo, hi in zip(band_edges[:-1], band_edges[1:], strict=True)], axis=1)
    db = 20 * np.log10(np.maximum(bands, 1e-9))
    scaled = np.clip((db - (db.max() - 80.0)) / 80.0 * 255.0, 0, 255).astype(np.uint8)
    return {"seconds": n / rate, "columns": cols, "bands": OVERVIEW_BANDS,
            "min": np.round(mins, 4).tolist(), "max": np.round(maxs, 4).tolist(),
            "spectrogram": base64.b64encode(scaled.tobytes()).decode("ascii")}  # row-major (columns, bands)
