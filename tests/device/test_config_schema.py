"""The config schema: one declaration per key, the example file documents exactly the declared keys, refusals are
worded in one place, and deploy/install.sh's SPI check reads the knobs the way the schema does."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from typing import Any

import pytest

from murmur import REPO_ROOT as ROOT
from murmur.device.config_schema import (
    REQUIRED,
    TABLES,
    Boolean,
    Float,
    Integer,
    Invalid,
    Key,
    List,
    String,
    Table,
    read_file,
    read_table,
)
from murmur.device.controls.mapping import parse_knobs
from murmur.device.errors import ConfigError

EXAMPLE = ROOT / "deploy" / "murmur.toml"
_COMMENTED_KEY = re.compile(r"^#\s*([a-z_][a-z0-9_]*\s*=\s*.+)$")
_COMMENTED_TABLE = re.compile(r"^#\s*(\[[a-z_.]+\])\s*$")


def documented(text: str) -> dict[str, Any]:
    """The example with its commented-out examples (``# key = value``, ``# [table]``) switched on: everything
    the file shows a reader how to write. Prose comments that merely start with ``word =`` are not TOML and stay."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if match := _COMMENTED_TABLE.match(stripped):
            lines.append(match.group(1))
            continue
        if match := _COMMENTED_KEY.match(stripped):
            try:
                tomllib.loads(match.group(1))
            except tomllib.TOMLDecodeError:
                pass
            else:
                lines.append(match.group(1))
                continue
        lines.append(line)
    return tomllib.loads("\n".join(lines))


def shown_keys(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Declaration label ("playback", "knobs", "knobs.pot", …) -> {key: a value the example shows for it}."""
    shown: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        for key, value in table.items():
            if name in TABLES and TABLES[name].items and isinstance(value, dict):  # [knobs.<name>], [midi.<name>]
                for sub_key, sub_value in value.items():
                    shown.setdefault(f"{name}.{value.get('type')}", {})[sub_key] = sub_value
            else:
                shown.setdefault(name, {})[key] = value
    return shown


def declared() -> dict[str, Table]:
    tables = dict(TABLES)
    for name, table in TABLES.items():
        tables.update({f"{name}.{kind}": item for kind, item in table.items.items()})
    return tables


def test_commented_out_examples_are_switched_on_and_prose_is_not():
    text = "[a]\n# x = 1\n# false = leave it alone (prose)\n# [b]\n# y = \"z\"\n"
    assert documented(text) == {"a": {"x": 1}, "b": {"y": "z"}}


def test_every_key_the_example_shows_is_declared_and_every_declared_key_is_shown():
    """One schema for anything two files read: the example documents exactly the declared keys, table by table
    (each knob type's keys in some [knobs.<name>] of that type), with values the schema accepts."""
    shown = shown_keys(documented(EXAMPLE.read_text()))
    tables = declared()
    assert set(shown) == set(tables), "tables shown in deploy/murmur.toml differ from the schema's"
    problems = []
    for label, table in tables.items():
        for key in table.keys.keys() - shown[label].keys():
            problems.append(f"[{label}] {key} is declared but deploy/murmur.toml does not show it")
        for key, value in shown[label].items():
            if key not in table.keys:
                problems.append(f"[{label}] {key} is in deploy/murmur.toml but not declared in the schema")
                continue
            try:
                table.keys[key].type.check(value)
            except Invalid as exc:
                problems.append(f"[{label}] {key} = {value!r} in deploy/murmur.toml: {exc}")
    assert not problems, "\n".join(problems)


def test_every_declared_key_has_a_one_line_help_and_a_default_of_its_type():
    for label, table in declared().items():
        for key, decl in table.keys.items():
            assert decl.help.strip() and "\n" not in decl.help, f"[{label}] {key}: no one-line help"
            if decl.default is not None and decl.default is not REQUIRED:
                assert decl.type.check(decl.default) == decl.default, f"[{label}] {key}: default does not fit"


DEMO = Table("demo", {
    "count": Key(Integer(1, 9), 3, "how many"),
    "level": Key(Float(0.0, 1.0), 0.5, "how loud"),
    "on": Key(Boolean(), True, "whether it runs"),
    "mode": Key(String(choices=("a", "b")), "a", "which way"),
    "pins": Key(List(Integer(0, 27), "two GPIO numbers [A, B]", length=2, distinct=True), [1, 2], "where"),
}, help="a table for the tests")


def test_read_table_fills_defaults_and_keeps_given_values():
    values = read_table(DEMO, {"count": 5, "level": 1}, "f.toml")
    assert values["count"] == 5 and values["level"] == 1.0 and isinstance(values["level"], float)
    assert values["on"] is True and values["mode"] == "a" and values["pins"] == [1, 2]
    assert values.given("count") and not values.given("on")


@pytest.mark.parametrize(("raw", "message"), [
    ({"cuont": 5}, "f.toml: [demo] cuont = 5: unknown key; known keys here: count, level, on, mode, pins"),
    ({"count": 0}, "f.toml: [demo] count = 0: expected 1–9 (how many)"),
    ({"count": 2.5}, "f.toml: [demo] count = 2.5: expected a whole number, 1–9 (how many)"),
    ({"count": True}, "f.toml: [demo] count = true: expected a whole number, 1–9 (how many)"),
    ({"level": 2}, "f.toml: [demo] level = 2: out of range; use 0 … 1 (how loud)"),
    ({"level": "x"}, 'f.toml: [demo] level = "x": expected a number between 0 and 1 (how loud)'),
    ({"on": 1}, "f.toml: [demo] on = 1: expected true or false (whether it runs)"),
    ({"mode": "c"}, 'f.toml: [demo] mode = "c": expected one of "a", "b" (which way)'),
    ({"pins": [3, 3]}, "f.toml: [demo] pins = [3, 3]: expected two GPIO numbers [A, B] (where)"),
    ({"pins": [3, 30]}, "f.toml: [demo] pins = [3, 30]: expected two GPIO numbers [A, B] (where)"),
])
def test_refusals_name_the_file_the_table_the_key_the_value_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as caught:
        read_table(DEMO, raw, "f.toml")
    assert str(caught.value) == message


def test_a_required_key_missing_is_named():
    table = Table("t", {"pin": Key(Integer(0, 27), REQUIRED, "the GPIO")}, help="")
    with pytest.raises(ConfigError, match=r"^f.toml: \[t\] pin \(missing\): this key is required \(the GPIO\)$"):
        read_table(table, {}, "f.toml")


def test_read_file_refuses_unknown_tables_and_non_tables(tmp_path):
    path = tmp_path / "murmur.toml"
    path.write_text("[sampler]\ntemperature = 0.5\n")
    assert read_file(path) == {"sampler": {"temperature": 0.5}}
    path.write_text("sampler = 3\n")
    with pytest.raises(ConfigError, match=r"sampler = 3 must be a table; write \[sampler\]"):
        read_file(path)
    path.write_text("[knob]\n")
    with pytest.raises(ConfigError, match=r"unknown table or key 'knob'; known tables: playback, sampler, schedule"):
        read_file(path)


def _install_spi_check() -> str:
    """The Python that deploy/install.sh runs on the config to decide whether SPI is needed."""
    text = (ROOT / "deploy" / "install.sh").read_text()
    match = re.search(r"needs_spi=\$\(python3 - \"\$CONFIG\" <<'EOF'.*?\n(.*?)\nEOF\n", text, re.S)
    assert match, "deploy/install.sh no longer computes needs_spi from the config with an inline python3 script"
    return match.group(1)


@pytest.mark.parametrize("text", [
    "",
    '[knobs]\n[knobs.a]\ntype = "pot"\nchannel = 0\ncontrol = "jump"\n',
    '[knobs]\nenabled = true\n[knobs.a]\ntype = "pot"\nchannel = 0\ncontrol = "jump"\n',
    '[knobs]\nenabled = false\n[knobs.a]\ntype = "pot"\nchannel = 0\ncontrol = "jump"\n',
    '[knobs]\n[knobs.b]\ntype = "button"\npin = 22\npress = "reseed"\n',
    EXAMPLE.read_text(),
])
def test_install_sh_needs_spi_agrees_with_the_schema(tmp_path, text):
    """install.sh reads the raw TOML (the Pi's system python3, before the venv exists): it must say "yes" exactly
    when the schema's knob map needs SPI (enabled by default, any input of type "pot")."""
    path = tmp_path / "murmur.toml"
    path.write_text(text)
    data = tomllib.loads(text)
    expected = "yes" if parse_knobs(data.get("knobs", {}), data.get("led"), str(path)).needs_spi else "no"
    proc = subprocess.run([sys.executable, "-", str(path)], input=_install_spi_check(), capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == expected
