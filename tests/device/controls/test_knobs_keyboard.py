"""The desktop stand-in: keys from a stream (a pipe, a StringIO, a pseudo-terminal) turn the controls."""

from __future__ import annotations

import io
import os
import pty
import termios

import pytest

from murmur.device.controls.keyboard import HELP, apply_key, cli, describe, load_panel, start_keyboard
from murmur.device.controls.values import Controls, ControlStore


def test_apply_key_steps_toggles_and_actions():
    controls = Controls()
    assert apply_key("q", controls) == ({"temperature": pytest.approx(0.35)}, None)
    assert apply_key("A", controls) == ({"temperature": pytest.approx(0.25)}, None)
    assert apply_key("+", controls) == ({"gain_db": 1.0}, None)
    assert apply_key("h", controls) == ({"hold": True}, None)
    assert apply_key("r", controls) == ({}, "reseed")
    assert apply_key("n", controls) == ({}, "next_bundle")
    assert apply_key("x", controls) == ({}, None)


def test_keys_from_a_string_stream_reach_the_store_and_the_values_are_echoed():
    store, out = ControlStore(), io.StringIO()
    knobs = start_keyboard(store, io.StringIO("qqqwhr--x"), out=out)
    assert knobs.done.wait(3.0)
    knobs.close()
    controls = store.snapshot()
    assert controls.temperature == pytest.approx(0.45)
    assert controls.jump == pytest.approx(0.5)
    assert controls.hold is True
    assert controls.gain_db == -2.0
    assert store.take_events() == ("reseed",)
    lines = out.getvalue().splitlines()
    assert lines[0] == HELP
    assert lines[1] == describe(Controls())
    assert lines[-1] == describe(controls)
    assert knobs.values()["inputs"]["keys_handled"] == 9


def test_values_are_clamped_to_the_control_ranges():
    store = ControlStore()
    knobs = start_keyboard(store, io.StringIO("a" * 20 + "e" * 30), out=io.StringIO())
    assert knobs.done.wait(3.0)
    knobs.close()
    assert store.snapshot().temperature == 0.0
    assert store.snapshot().position == 1.0


def test_keys_from_a_pipe_and_close_stops_listening():
    read_fd, write_fd = os.pipe()
    store = ControlStore()
    with os.fdopen(read_fd, "r") as stream:
        knobs = start_keyboard(store, stream, out=io.StringIO())
        os.write(write_fd, b"ee")
        knobs.close()  # while the writer is still open: close must not hang on the read
        assert knobs.done.is_set()
    os.close(write_fd)


def test_terminal_is_in_cbreak_mode_while_listening_and_restored_on_close():
    controller, terminal = pty.openpty()
    before = termios.tcgetattr(terminal)
    assert before[3] & termios.ICANON
    store = ControlStore()
    with os.fdopen(terminal, "r", closefd=False) as stream:
        knobs = start_keyboard(store, stream, out=io.StringIO())
        assert not termios.tcgetattr(terminal)[3] & termios.ICANON  # keys arrive without Enter
        os.write(controller, b"w\x04")  # one key, then Ctrl-D: stop listening
        assert knobs.done.wait(3.0)
        knobs.close()
    assert termios.tcgetattr(terminal) == before
    assert store.snapshot().jump == pytest.approx(0.5)
    os.close(controller)
    os.close(terminal)


def test_without_termios_a_terminal_is_read_a_line_at_a_time(monkeypatch):
    """As on Windows: no termios module. The terminal is left as it is (keys then Enter) and the keys still work."""
    import sys

    monkeypatch.setitem(sys.modules, "termios", None)  # `import termios` raises ImportError
    controller, terminal = pty.openpty()
    before = termios.tcgetattr(terminal)
    store = ControlStore()
    with os.fdopen(terminal, "r", closefd=False) as stream:
        knobs = start_keyboard(store, stream, out=io.StringIO())
        assert termios.tcgetattr(terminal) == before  # still canonical: nothing changed
        os.write(controller, b"w\n\x04")
        assert knobs.done.wait(3.0)
        knobs.close()
    assert store.snapshot().jump == pytest.approx(0.5)
    os.close(controller)
    os.close(terminal)


def test_keys_command_runs_the_stand_in_on_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("q"))
    assert cli(["keys", "--set", "temperature=1.0"]) == 0
    err = capsys.readouterr().err
    assert "temperature 1.05" in err.splitlines()[-1]


def test_keys_command_refuses_a_bad_setting(capsys):
    assert cli(["keys", "--set", "tempo=1"]) == 2
    assert "unknown control 'tempo'" in capsys.readouterr().err


def test_keys_command_refuses_an_out_of_range_setting(capsys):
    assert cli(["keys", "--set", "gain_db=20"]) == 2
    assert "control gain_db=20: out of range; use -60 … 12" in capsys.readouterr().err


def test_keys_config_panel_is_read_through_the_config_schema(tmp_path, capsys):
    """The wiring check reads the file with the config's own reader: the same refusals as the service's."""
    config = tmp_path / "murmur.toml"
    config.write_text('[knob]\nenabled = true\n')
    assert cli(["keys", "--config", str(config)]) == 2
    assert f"{config}: unknown table or key 'knob'" in capsys.readouterr().err
    config.write_text('[knobs]\npoll_hz = "fast"\n')
    assert cli(["keys", "--config", str(config)]) == 2
    assert f'{config}: [knobs] poll_hz = "fast": expected a number between 20 and 1000' in capsys.readouterr().err
    config.write_text('[knobs\n')
    assert cli(["keys", "--config", str(config)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_load_panel_switches_the_knobs_on_for_the_wiring_check(tmp_path):
    config = tmp_path / "murmur.toml"
    config.write_text('[playback]\nbundle = "not/checked/here"\n[knobs]\nenabled = false\n'
                      '[knobs.b]\ntype = "button"\npin = 22\npress = "reseed"\n')
    knob_map = load_panel(str(config))
    assert knob_map.enabled and knob_map.buttons[0].pin == 22
