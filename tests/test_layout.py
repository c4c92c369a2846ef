"""The layout holds: one import name (``murmur``), imports that go one way, no import circle, no runtime module
that imports the test doubles, and a package list in pyproject.toml that matches the folders.

Imports are read from the source (every ``import``/``from`` anywhere in a module, including those under
``TYPE_CHECKING`` and inside functions), so a circle fails here even when Python would tolerate it at run time.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from murmur import REPO_ROOT

PARTS = ("device", "trainer", "deploy", "studio")


def module_files() -> dict[str, Path]:
    """murmur.* module name -> its file, for every module of the four parts and the murmur package itself."""
    modules = {f"murmur.{p.stem}": p for p in (REPO_ROOT / "murmur").glob("*.py") if p.stem != "__init__"}
    modules["murmur"] = REPO_ROOT / "murmur" / "__init__.py"
    for part in PARTS:
        for path in (REPO_ROOT / part).rglob("*.py"):
            rel = path.relative_to(REPO_ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if all((REPO_ROOT / Path(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts) + 1)
                   if (REPO_ROOT / Path(*parts[:i])).is_dir()):
                modules["murmur." + ".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The murmur modules ``name`` imports (``from pkg import module`` resolves to the module where one exists)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """The first import circle a depth-first search meets (``[a, b, …, a]``), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_there_is_no_import_circle(graph):
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_search_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_imports_go_one_way(graph):
    """device imports none of trainer, deploy, studio; no runtime module imports the test doubles."""
    wrong = []
    for name, deps in graph.items():
        testing = ".testing" in name
        for dep in deps:
            if name.startswith("murmur.device") and dep.startswith(("murmur.trainer", "murmur.deploy", "murmur.studio")):
                wrong.append(f"{name} imports {dep}")
            if not testing and ".testing" in dep:
                wrong.append(f"{name} (runtime) imports the test double {dep}")
    assert not wrong, "\n".join(wrong)


def test_code_imports_the_parts_only_through_murmur():
    """``import device`` (or a child started with ``python -m device``) would load a second copy of a module beside
    ``murmur.device`` (two class identities), and fails in an install, where only ``murmur`` exists."""
    offenders = []
    for top in (*PARTS, "murmur", "tests", "benchmarks"):
        for path in (REPO_ROOT / top).rglob("*.py"):
            if path.is_symlink() or (top == "murmur" and path.parent != REPO_ROOT / "murmur"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names if n.split(".")[0] in PARTS]
            offenders += [f"{path.relative_to(REPO_ROOT)}: python -m {m}"
                          for m in re.findall(r"[\"']-m[\"'],\s*[\"'](device|trainer|deploy|studio)[\"']", path.read_text())]
    assert not offenders, "\n".join(offenders)


def test_pyproject_lists_every_package_folder_under_murmur():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"murmur"} | {
        "murmur." + ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for part in PARTS for init in (REPO_ROOT / part).rglob("__init__.py")}
    assert set(config["packages"]) == folders
    assert config["package-dir"] == {"murmur": "murmur", **{f"murmur.{p}": p for p in PARTS}}
    for part in PARTS:  # the checkout's links that make `murmur.<part>` importable without an install
        link = REPO_ROOT / "murmur" / part
        assert link.is_symlink() and link.resolve() == (REPO_ROOT / part).resolve(), link


def test_importing_murmur_gives_numpy_one_blas_thread_unless_the_environment_says_otherwise():
    """Per-frame matrix-vector products spread over every core wait on each other when a core is busy (BENCHMARKS.md
    "Engine stages": 0.05 ms -> several ms per cut): every entry point imports murmur before numpy."""
    pytest.importorskip("threadpoolctl")  # read in the child processes
    probe = ("import murmur, numpy, threadpoolctl; "
             "print(sorted({i['num_threads'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'}))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    ours = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert ours.stdout.strip() == "[1]", ours.stdout + ours.stderr
    env["OPENBLAS_NUM_THREADS"] = "2"
    theirs = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert theirs.stdout.strip() == "[2]", theirs.stdout + theirs.stderr
