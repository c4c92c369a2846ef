"""murmur.device.controls.values: values clamped and validated once at the boundary, events cross threads safely."""

import threading

import pytest

from murmur.device.controls.values import Controls, ControlStore, parse_settings
from murmur.device.errors import ConfigError


def test_replace_clamps_to_range():
    controls = Controls().replace(temperature=9.0, position=-1.0)
    assert controls.temperature == 2.0 and controls.position == 0.0


def test_parse_settings_from_make_set():
    changes = parse_settings("temperature=0.5 jump=1, hold=on")
    assert changes == {"temperature": 0.5, "jump": 1.0, "hold": True}


@pytest.mark.parametrize("text, fragment", [
    ("temprature=0.5", "unknown control 'temprature'"),
    ("temperature=hot", "temperature='hot' is not a number"),
    ("temperature", "must look like name=value"),
    ("hold=maybe", "hold='maybe'"),
])
def test_bad_settings_name_the_key_and_value(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_settings(text)


@pytest.mark.parametrize("text, message", [
    ("temperature=99", "control temperature=99: out of range; use 0 … 2 (e.g. temperature=2, the nearest allowed value)"),
    ("gain_db=-80", "control gain_db=-80: out of range; use -60 … 12 (e.g. gain_db=-60, the nearest allowed value)"),
    ("jump=1 position=1.5", "control position=1.5: out of range; use 0 … 1 (e.g. position=1, the nearest allowed value)"),
])
def test_out_of_range_settings_are_refused_naming_control_value_and_range(text, message):
    """As in the config file's [sampler]: a value outside the range is refused, not clamped without a word."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    assert str(caught.value) == message


def test_settings_at_the_ends_of_the_range_are_kept():
    assert parse_settings("temperature=2 gain_db=-60 position=0") == {"temperature": 2.0, "gain_db": -60.0,
                                                                       "position": 0.0}


def test_render_refuses_an_out_of_range_setting_before_any_work(tmp_path, capsys):
    """``make render SET="temperature=99"``: exit 2 and one line naming the control, the value and the range;
    no bundle is loaded and no file written."""
    from murmur.device.cli.engine import cli

    out = tmp_path / "out.wav"
    code = cli(["render", "--bundle", str(tmp_path / "no-bundle"), "--seconds", "1", "--out", str(out),
                "--set", "temperature=99"])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err == ("render: control temperature=99: out of range; use 0 … 2 "
                                       "(e.g. temperature=2, the nearest allowed value)\n")


def test_store_update_from_threads_and_events():
    store = ControlStore()
    version_before = store.version
    threads = [threading.Thread(target=store.set, args=("jump", 0.1 * i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.version == version_before + 8
    assert store.take_events() == ()
    store.trigger("reseed")
    store.trigger("next_bundle")
    store.trigger("previous_bundle")
    assert store.take_events() == ("reseed",)  # the generator's, taken by the producer every frame
    assert store.take_service_events() == ("next_bundle", "previous_bundle")  # the playlist's: the main loop
    assert store.take_events() == () and store.take_service_events() == ()
    with pytest.raises(ConfigError, match="unknown action 'explode'"):
        store.trigger("explode")
