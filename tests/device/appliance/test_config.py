"""The appliance config file: the shipped example loads, every table is validated, errors name key and value."""

from pathlib import Path

import pytest

from murmur import REPO_ROOT as ROOT
from murmur.device.appliance.config import load_config
from murmur.device.controls.values import Controls
from murmur.device.errors import ConfigError

EXAMPLE = ROOT / "deploy" / "murmur.toml"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "bundles" / "a").mkdir(parents=True, exist_ok=True)
    (tmp_path / "bundles" / "b").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "murmur.toml"
    path.write_text(text)
    return path


def test_shipped_example_loads_with_its_bundle_path_swapped(tmp_path):
    """The example is the documentation: it must stay loadable (only the bundle path differs on a laptop)."""
    text = EXAMPLE.read_text()
    assert 'bundle = "/opt/murmur/current/bundle"' in text
    path = write(tmp_path, text.replace("/opt/murmur/current/bundle", str(tmp_path / "bundles" / "a")))
    config = load_config(path)
    assert config.playback.bundles == (tmp_path / "bundles" / "a",)
    assert config.playback.volume_cap_db == -6.0 and config.playback.output_device is None
    assert config.sampler == Controls()
    assert config.schedule.always_open and config.schedule.fade_in_s == 10.0


def test_playlist_relative_paths_schedule_and_sampler(tmp_path):
    path = write(
        tmp_path,
        """
[playback]
playlist = ["bundles/a", "bundles/b"]
rotate_minutes = 45
output_device = "sndrpihifiberry"
volume_cap_db = -12
crossfade_s = 5
[sampler]
temperature = 0.7
hold = true
[schedule]
tue = "10:00-18:00"
fade_in_s = 3
""",
    )
    config = load_config(path)
    assert config.playback.bundles == (tmp_path / "bundles" / "a", tmp_path / "bundles" / "b")
    assert config.playback.rotate_minutes == 45 and config.playback.output_device == "sndrpihifiberry"
    assert config.playback.volume_cap_db == -12 and config.playback.crossfade_s == 5
    assert config.sampler.temperature == 0.7 and config.sampler.hold is True and config.sampler.jump == 0.25
    assert not config.schedule.always_open and config.schedule.days[1] == ((600, 1080),)
    assert config.schedule.days[0] == () and config.schedule.fade_in_s == 3 and config.schedule.fade_out_s == 10


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[playback]\nbundle = "bundles/a"\nvolume_cap_db = 3\n', ["[playback] volume_cap_db = 3", "out of range; use -60 … 0"]),
        ('[playback]\nbundle = "bundles/a"\nvolume_cap_db = "loud"\n', ['[playback] volume_cap_db = "loud"', "expected a number"]),
        ('[playback]\nbundle = "bundles/nowhere"\n', ['[playback] bundle = "bundles/nowhere"', "not a directory"]),
        ('[playback]\nbundle = "bundles/a"\nplaylist = ["bundles/b"]\n', ["exactly one of", "both"]),
        ("[playback]\nrotate_minutes = 5\n", ["exactly one of", "neither"]),
        ('[playback]\nplaylist = []\n', ["[playback] playlist = []", "non-empty"]),
        ('[playback]\nbundle = "bundles/a"\nvolum_cap_db = -6\n', ["[playback] volum_cap_db = -6", "unknown key", "volume_cap_db"]),
        ('[playback]\nbundle = "bundles/a"\noutput_device = 2\n', ["[playback] output_device = 2", "sound card name"]),
        ('[playback]\nbundle = "bundles/a"\n[sampler]\ntemperature = 9\n', ["[sampler] temperature = 9", "out of range; use 0 … 2"]),
        ('[playback]\nbundle = "bundles/a"\n[sampler]\ngain_db = 20\n', ["[sampler] gain_db = 20", "out of range; use -60 … 12"]),
        ('[playback]\nbundle = "bundles/a"\n[sampler]\nhold = "yes"\n', ['[sampler] hold = "yes"', "true or false"]),
        ('[playback]\nbundle = "bundles/a"\n[sampler]\nwarmth = 1\n', ["[sampler] warmth = 1", "unknown key", "temperature"]),
        ('[playback]\nbundle = "bundles/a"\n[schedule]\nmon = "9-17"\n', ['[schedule] mon = "9-17"', "HH:MM"]),
        ('[playback]\nbundle = "bundles/a"\n[playbak]\n', ["unknown table or key 'playbak'"]),
        ('[sampler]\ntemperature = 1\n', ["[playback] table is missing"]),
        ('[playback]\nbundle = "bundles/a\n', ["not valid TOML"]),
    ],
)
def test_errors_name_file_key_and_value(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file_says_where_to_copy_the_example(tmp_path):
    with pytest.raises(ConfigError, match="copy deploy/murmur.toml"):
        load_config(tmp_path / "nope.toml")


def test_knob_tables_go_through_the_knobs_parser(tmp_path):
    """[knobs] is validated by the knobs helper's parser when it is installed: a bad value fails the whole load."""
    mapping = pytest.importorskip("murmur.device.controls.mapping")
    good = write(tmp_path, '[playback]\nbundle = "bundles/a"\n[knobs]\nenabled = false\n')
    config = load_config(good)
    assert isinstance(config.knobs, mapping.KnobMap)
    bad = write(tmp_path, '[playback]\nbundle = "bundles/a"\n[knobs]\npoll_hz = 5\n')
    with pytest.raises(ConfigError, match="poll_hz"):
        load_config(bad)
