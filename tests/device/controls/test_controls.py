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
