"""Packaging (pyproject.toml) and the `murmur` console script (murmur/cli.py): the extras, the laptop's wheels-only
promise (no PyAudio, no systemd-python), the dispatcher's commands and exit codes, and what a built wheel holds.
The real install into a bare Debian root is a benchmark: `make bench ARGS="--only pip"` (benchmarks/bench_pip.py).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from murmur import REPO_ROOT as ROOT

pytestmark = pytest.mark.skipif(not (ROOT / "murmur").is_dir() or not (ROOT / "trainer").is_dir(),
                                reason="the laptop's checkout (a Pi release holds no murmur/ or trainer/)")

EXTRAS = ("device", "trainer", "studio", "dev")
SUBCOMMANDS = ("train", "demo", "render", "play", "resynth", "list-devices", "verify", "keys", "studio", "deploy",
               "rollback", "logs", "status")
NEEDS_A_COMPILER = {"pyaudio", "systemd-python"}  # no wheels on PyPI for Linux; build against -dev packages
PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"},
    "linux-aarch64": {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"},
    "macos-arm64": {"sys_platform": "darwin", "platform_machine": "arm64", "platform_system": "Darwin"},
    "windows-amd64": {"sys_platform": "win32", "platform_machine": "AMD64", "platform_system": "Windows"},
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def name_of(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def murmur(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "murmur", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_pyproject_declares_the_build_the_script_and_every_extra():
    data = pyproject()
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"
    project = data["project"]
    assert set(EXTRAS) <= set(project["optional-dependencies"])
    assert project["scripts"] == {"murmur": "murmur.cli:main"}
    assert {"ruff", "pytest", "mypy"} <= set(data["tool"])  # the tool settings stay
    assert name_of(project["optional-dependencies"]["studio"][0]) == "aiohttp"


@pytest.mark.parametrize("extra", ["trainer", "studio"])
def test_the_laptop_extras_need_no_compiler(extra):
    names = {name_of(r) for r in pyproject()["project"]["optional-dependencies"][extra]}
    assert not names & NEEDS_A_COMPILER, f"{extra} must install from wheels alone; PyAudio stays in `device`"


def test_device_extra_keeps_the_sound_card_and_the_knobs():
    names = {name_of(r) for r in pyproject()["project"]["optional-dependencies"]["device"]}
    assert {"numpy", "ai-edge-litert", "gpiozero", "pyaudio", "systemd-python"} <= names


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_the_trainer_gets_exactly_one_tensorflow_and_a_litert_on_each_laptop_system(platform):
    markers = pytest.importorskip("packaging.requirements")
    env = PLATFORMS[platform]
    chosen = [name_of(r) for r in pyproject()["project"]["optional-dependencies"]["trainer"]
              if (m := markers.Requirement(r).marker) is None or m.evaluate(env)]
    assert len([n for n in chosen if n in ("tensorflow", "tensorflow-cpu")]) == 1, chosen
    assert "ai-edge-litert" in chosen  # it has wheels on all four; the exporter's parity check imports it
    expected_tf = "tensorflow-cpu" if platform in ("linux-x86_64", "windows-amd64") else "tensorflow"
    assert expected_tf in chosen


def test_the_console_script_points_at_an_importable_function():
    module_name, function_name = pyproject()["project"]["scripts"]["murmur"].split(":")
    assert callable(getattr(importlib.import_module(module_name), function_name))


def test_help_lists_every_subcommand_and_exits_0():
    result = murmur("--help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert set(SUBCOMMANDS) <= listed, result.stdout


def test_an_unknown_command_exits_2_with_the_list():
    result = murmur("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr and "  render" in result.stderr


def test_no_command_exits_2():
    assert murmur().returncode == 2


def test_render_without_options_is_the_devices_own_usage_error():
    result = murmur("render")
    assert result.returncode == 2
    assert "python -m murmur.device render" in result.stderr and "--bundle" in result.stderr


@pytest.mark.parametrize("command", ["train", "deploy"])
def test_help_of_a_command_is_its_parts_help(command):
    result = murmur(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_importing_the_dispatcher_imports_nothing_heavy():
    code = ("import sys, murmur.cli; heavy = [m for m in ('numpy', 'tensorflow', 'keras', 'murmur.device', "
            "'murmur.trainer', 'murmur.studio', 'murmur.deploy') if m in sys.modules]; print(heavy); "
            "sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_command_goes_to_its_part_with_its_arguments(monkeypatch):
    from murmur import cli

    calls: list[tuple[str, list[str]]] = []
    for part in cli.RUNNERS:
        monkeypatch.setitem(cli.RUNNERS, part, lambda argv, part=part: calls.append((part, argv)) or 0)
    for command in SUBCOMMANDS:
        assert cli.main([command, "--x", "1"]) == 0
    parts = dict(zip(SUBCOMMANDS, (p for p, _ in calls), strict=True))
    assert {c for c, p in parts.items() if p == "trainer"} == {"train", "demo"}
    assert {c for c, p in parts.items() if p == "deploy"} == {"deploy", "rollback", "logs", "status"}
    assert parts["studio"] == "studio"
    assert all(argv == [command, "--x", "1"] for (_, argv), command in zip(calls, SUBCOMMANDS, strict=True))


def test_studio_gets_only_its_options(monkeypatch):
    from murmur import cli

    seen = []

    class FakeStudio:
        @staticmethod
        def main(argv):
            seen.append(argv)
            return 0

    monkeypatch.setattr(cli.importlib, "import_module", lambda name: FakeStudio if name == "murmur.studio.cli" else None)
    assert cli.main(["studio", "--no-browser"]) == 0
    assert seen == [["--no-browser"]]


def test_a_missing_dependency_names_the_extra_that_installs_it(monkeypatch, capsys):
    from murmur import cli

    def missing(argv):
        raise ModuleNotFoundError("No module named 'aiohttp'", name="aiohttp")

    monkeypatch.setitem(cli.RUNNERS, "studio", missing)
    assert cli.main(["studio"]) == 1
    assert 'pip install "murmur[studio]"' in capsys.readouterr().err


@pytest.mark.slow
def test_the_wheel_holds_the_demo_clip_the_deploy_files_and_the_studio_page(tmp_path):
    pytest.importorskip("setuptools")
    try:
        importlib.import_module("setuptools.command.bdist_wheel")  # setuptools >= 70.1 builds wheels itself
    except ImportError:
        pytest.importorskip("wheel", reason="an older setuptools needs the `wheel` package to build one offline")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    source = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    names = [n for n in tracked.stdout.split("\0") if n]
    names += [str(p.relative_to(ROOT)) for top in ("device", "studio") for p in (ROOT / top).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts]  # new modules, perhaps not yet committed
    names = [n for n in names if not (ROOT / n).is_symlink()]  # murmur/'s links: the wheel maps the folders
    for name in set(names):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("murmur-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in files if n.endswith("entry_points.txt"))
    assert "murmur = murmur.cli:main" in entry_points
    top_level = {n.split("/")[0] for n in files if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"murmur"}, f"the wheel must install one import name, found {sorted(top_level)}"
    for needed in ("trainer/demo/demo.ogg", "trainer/demo/README.md", "deploy/murmur.service",
                   "deploy/murmur-recover.service", "deploy/murmur.toml", "deploy/install.sh",
                   "deploy/inventory.example.toml", "deploy/requirements-pi.txt", "deploy/pi_release.py",
                   "cli.py", "__main__.py", "device/controls/keyboard.py", "trainer/cli.py"):
        assert f"murmur/{needed}" in files, needed
    static = ROOT / "studio" / "static"
    if static.is_dir():
        for page in static.iterdir():
            if page.is_file():
                assert f"murmur/studio/static/{page.name}" in files, page.name
