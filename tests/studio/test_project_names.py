"""Recording names in the studio's project: every name an upload can carry (dates and take numbers with dots,
percent-escapes, path pieces, any Unicode) gives a recording that can be listed, shown, selected, written for the
trainer and removed by the name the project gave it."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("soundfile")
import soundfile

from murmur.studio.errors import StudioError
from murmur.studio.project import MAX_NAME, Project, is_safe_name, safe_name

UPLOAD_NAMES = ["apollo take.2.wav", "..%2f..%2fx.wav", "2026.12.07 gallery.flac", "take...3.wav", "x.wav",
                "...wav", ".wav", "a..b.ogg", "-dash.wav", "ünïcødé.wav", "a" * 200 + ".b" * 50 + ".wav"]


@pytest.mark.parametrize(("given", "expected"), [
    ("apollo take.2.wav", "apollo_take.2"), ("..%2f..%2fx.wav", "_2f._2fx".strip("._-")), ("take...3.wav", "take.3"),
    ("2026.12.07.wav", "2026.12.07"), ("...wav", "recording"),
])
def test_dots_inside_a_name_stay_and_runs_of_them_become_one(given, expected):
    assert safe_name(given) == expected


def test_every_name_safe_name_makes_is_accepted_back():
    rng = random.Random(7)
    alphabet = "aZ09._- /\\%:;'\"ü€\x00\t"
    names = UPLOAD_NAMES + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(3000)]
    for given in names:
        name = safe_name(given)
        assert is_safe_name(name), (given, name)
        assert len(name) <= MAX_NAME and "/" not in name and "\\" not in name and ".." not in name


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", ".hidden", "x.", "a..b", "x" * (MAX_NAME + 1)])
def test_names_that_could_leave_the_folder_are_refused(bad):
    assert not is_safe_name(bad)


def wav_upload(tmp_path, seconds: float = 2.0, rate: int = 22050):
    t = np.arange(int(seconds * rate)) / rate
    path = tmp_path / "upload.tmp"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    return path


@pytest.mark.parametrize("filename", ["apollo take.2.wav", "..%2f..%2fx.wav", "2026.12.07 gallery.wav"])
def test_a_dotted_upload_can_be_shown_selected_trained_and_removed(tmp_path, filename):
    project = Project(tmp_path / "project", sample_rate_hz=22050)
    recording = project.add_recording(filename, wav_upload(tmp_path))
    name = recording.name
    assert [r.name for r in project.recordings()] == [name]
    assert project.overview(name)["seconds"] == pytest.approx(2.0)
    project.set_regions(name, [[0.0, 1.5]])
    selection, seconds = project.write_selection(tmp_path / "data")
    assert selection == [{"recording": name, "start_s": 0.0, "end_s": 1.5}] and seconds == pytest.approx(1.5)
    project.remove_recording(name)
    assert project.recordings() == []
    with pytest.raises(StudioError, match="no recording named"):
        project.recording_path(name)
