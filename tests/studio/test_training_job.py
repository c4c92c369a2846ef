"""A training run has one duration: it stops growing when the run ends (a reload long after shows the same
"done in"), and run.json records it for the Compare table."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("soundfile")

from murmur.studio import training
from murmur.studio.project import Project


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_finished_runs_duration_stops_at_its_end(tmp_path, monkeypatch):
    clock = Clock(1000.0)
    monkeypatch.setattr(training.time, "time", clock)
    job = training.TrainJob(Project(tmp_path, sample_rate_hz=22050), minutes=1, python=sys.executable)
    clock.now = 1042.0
    assert job.state()["elapsed_s"] == 42.0  # running: to now
    job._finish(1)  # the trainer failed: no bundle
    clock.now = 1342.0  # five minutes later, the page reloads
    state = job.state()
    assert state["status"] == "failed" and state["elapsed_s"] == 42.0


def test_run_json_records_the_same_duration_the_status_shows(tmp_path, monkeypatch):
    clock = Clock(500.0)
    monkeypatch.setattr(training.time, "time", clock)
    job = training.TrainJob(Project(tmp_path, sample_rate_hz=22050), minutes=1, python=sys.executable)
    (job.partial / "bundle").mkdir(parents=True)
    (job.partial / "bundle" / "bundle.json").write_text("{}")
    clock.now = 675.5
    job._finish(0)
    clock.now = 900.0
    record = json.loads((job.final / "run.json").read_text())
    assert job.state()["status"] == "done"
    assert record["run_seconds"] == job.state()["elapsed_s"] == 175.5
