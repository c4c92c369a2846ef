"""One training at a time: `python -m murmur.trainer train` in a child process, watched through its progress file.

The run is built in ``runs/.RUN.partial/`` and renamed to ``runs/RUN/`` only when the trainer finished and wrote
its bundle, so a cancelled, crashed or failed training leaves nothing half-written and earlier runs untouched.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from murmur import REPO_ROOT
from murmur.device.files import fsync_dir, replace_file

from .errors import StudioError
from .project import Project

# trainer options the page may pass (Advanced field); values are checked by the trainer itself
ALLOWED_OPTIONS = {"--units", "--layers", "--hop", "--n-fft", "--sample-rate", "--quantisation", "--seed",
                   "--val-fraction", "--seq-len", "--patience", "--max-epochs", "--input-noise", "--dropout",
                   "--preview-seconds"}
LOG_TAIL_LINES = 12


def parse_extra_args(text: str) -> list[str]:
    """The Advanced field -> argv; StudioError for anything that is not one of the trainer's model options."""
    try:
        argv = shlex.split(text or "")
    except ValueError as exc:
        raise StudioError(f"advanced options {text!r}: {exc}") from exc
    for word in argv:
        if word.startswith("-") and word.split("=", 1)[0] not in ALLOWED_OPTIONS:
            raise StudioError(f"advanced option {word!r} is not allowed here; use one of {', '.join(sorted(ALLOWED_OPTIONS))}")
    return argv


TRAINER_NICE = 10  # a training yields the CPU to the live stream (and the page) on a laptop that does both


def child_env() -> dict[str, str]:
    """The environment for ``python -m murmur.trainer`` / ``python -m murmur.deploy``: this code first on the path (a checkout
    run by `make studio` is not installed), output unbuffered so progress arrives as it happens."""
    code_root = str(REPO_ROOT)
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=code_root + (os.pathsep + path if path else ""))


def new_run_id(runs: Path) -> str:
    base = time.strftime("run-%Y%m%d-%H%M%S")
    run_id, n = base, 2
    while (runs / run_id).exists() or (runs / f".{run_id}.partial").exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


class TrainJob:
    """A training in progress (or just ended): start it, read its ``state()``, ``cancel()`` it."""

    def __init__(self, project: Project, *, minutes: float, extra_args: str = "", python: str = sys.executable):
        if not (0.2 <= minutes <= 120):
            raise StudioError(f"minutes={minutes}: the time budget must be between 0.2 and 120 minutes")
        self.project = project
        self.minutes = minutes
        self.extra = parse_extra_args(extra_args)
        self.extra_text = extra_args
        self.run_id = new_run_id(project.runs)
        self.partial = project.runs / f".{self.run_id}.partial"
        self.final = project.runs / self.run_id
        self.python = python
        self.started = time.time()
        self.finished: float | None = None  # when it ended (done, failed or cancelled): its duration stops there
        self.status = "preparing"  # preparing | training | done | failed | cancelled
        self.error: str | None = None
        self.progress: dict = {}
        self.epochs: list[dict] = []
        self.stages: list[str] = []
        self.done: dict = {}
        self._offset = 0
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self.selection: list[dict] = []
        self.material_seconds = 0.0

    def start(self) -> None:
        self.partial.mkdir(parents=True)
        try:
            self.selection, self.material_seconds = self.project.write_selection(self.partial / "material")
        except Exception:
            shutil.rmtree(self.partial, ignore_errors=True)
            raise
        argv = [self.python, "-m", "murmur.trainer", "train", str(self.partial / "material"), "--out",
                str(self.partial / "bundle"), "--minutes", f"{self.minutes:g}", "--name", self.run_id,
                "--progress-jsonl", str(self.partial / "progress.jsonl"), *self.extra]
        log = open(self.partial / "log.txt", "wb")  # handed to the child, closed in _watch
        env = child_env()
        kwargs: dict = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
            | subprocess.BELOW_NORMAL_PRIORITY_CLASS}  # type: ignore[attr-defined]
        if os.name == "posix" and shutil.which("nice"):
            argv = ["nice", "-n", str(TRAINER_NICE), *argv]  # `nice` execs the trainer: same pid, lower priority
        self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                      cwd=self.project.root, **kwargs)
        self.status = "training"
        threading.Thread(target=self._watch, args=(log,), name="studio-train", daemon=True).start()

    def cancel(self) -> None:
        """Stop the trainer (it stops cleanly on SIGINT and writes no bundle); the partial run is removed."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]

    def _watch(self, log) -> None:
        assert self._proc is not None
        try:
            while True:
                try:
                    code = self._proc.wait(timeout=0.25)
                except subprocess.TimeoutExpired:
                    self._read_progress()
                    continue
                break
        finally:
            log.close()
        self._read_progress()
        self._finish(code)

    def _read_progress(self) -> None:
        path = self.partial / "progress.jsonl"
        if not path.is_file():
            return
        with open(path, encoding="utf-8") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            with self._lock:
                if kind == "progress":
                    self.progress = event
                elif kind == "epoch":
                    self.epochs.append(event)
                elif kind == "stage":
                    self.stages.append(event.get("text", ""))
                elif kind == "done":
                    self.done = event
                elif kind == "error":
                    self.error = event.get("text")

    def _finish(self, code: int) -> None:
        self.finished = time.time()
        bundle_ok = code == 0 and (self.partial / "bundle" / "bundle.json").is_file()
        with self._lock:
            cancelled = self._cancelled
        if bundle_ok and not cancelled:
            record = self.record()
            replace_file(self.partial / "run.json", json.dumps(record, indent=1))
            shutil.rmtree(self.partial / "material", ignore_errors=True)  # the selection is in run.json
            os.replace(self.partial, self.final)  # the run appears whole (its bundle was written durably)
            fsync_dir(self.final.parent)
            self.status = "done"
            return
        tail = self.log_tail()
        shutil.rmtree(self.partial, ignore_errors=True)
        if cancelled:
            self.status, self.error = "cancelled", "cancelled: no bundle written; earlier runs are untouched"
        else:
            self.status = "failed"
            self.error = (self.error or f"the trainer exited with code {code}") + ("\n" + tail if tail else "")

    def log_tail(self) -> str:
        path = self.partial / "log.txt"
        try:
            lines = path.read_text(errors="replace").replace("\r", "\n").splitlines()
        except OSError:
            return ""
        return "\n".join(line for line in lines[-LOG_TAIL_LINES:] if line.strip())

    def record(self) -> dict:
        """run.json: what the Compare table shows (selection, settings, figures)."""
        done = self.done
        preview = self.final / "bundle-preview.wav"
        return {
            "id": self.run_id, "created_unix": round(self.started, 1), "minutes": self.minutes,
            "run_seconds": round(self.elapsed_s(), 1),
            "advanced": self.extra_text, "selection": self.selection,
            "material_seconds": round(self.material_seconds, 2),
            "train_seconds": done.get("seconds"), "epochs": done.get("epochs"), "stop_reason": done.get("stop_reason"),
            "val_lsd_db": done.get("val_lsd_db"), "baseline_lsd_db": done.get("baseline_lsd_db"),
            "bundle_id": done.get("bundle_id"), "bundle_bytes": done.get("bundle_bytes"),
            "figures": done.get("figures", []), "summary": done.get("summary", []), "learned": done.get("learned"),
            "preview": preview.name if done.get("preview_wav") else None,
            "picture": "bundle-preview.png" if done.get("preview_png") else None,
        }

    def elapsed_s(self) -> float:
        """Seconds from start to the end of the run (to now while it runs): the one duration the page shows."""
        return (self.finished if self.finished is not None else time.time()) - self.started

    def state(self) -> dict:
        with self._lock:
            p = dict(self.progress)
            elapsed = self.elapsed_s()
            budget = self.minutes * 60.0
            fraction = 1.0 if self.status == "done" else min(0.99, elapsed / budget) if budget else 0.0
            return {"run": self.run_id, "status": self.status, "error": self.error, "elapsed_s": round(elapsed, 1),
                    "eta_s": max(0.0, round(budget - elapsed, 1)) if self.status == "training" else 0.0,
                    "fraction": round(fraction, 3), "progress": p, "epochs": list(self.epochs),
                    "stage": self.stages[-1] if self.stages else ("preparing" if not p else "training"),
                    "log": self.log_tail() if self.status == "training" else ""}


def check_no_partial_left(project: Project) -> list[str]:
    """Partial runs of a studio that was killed mid-training: removed at start (they never became runs)."""
    removed = []
    for path in project.runs.glob(".run-*.partial"):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


__all__ = ["TrainJob", "StudioError", "check_no_partial_left", "parse_extra_args"]
