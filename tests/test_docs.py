"""Every repository path the developer and user docs name exists: a renamed or moved file fails here, not in a
newcomer's hands. Paths are words like ``device/generate/bank.py``, ``tests/…`` or ``deploy/…`` (relative to the
repository), Markdown links (relative to the document), and dotted names like ``murmur.device.bundle.load_bundle``
(the module, and the name defined in it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from murmur import REPO_ROOT

DOCS = ("docs/ARCHITECTURE.md", "README.md", "deploy/README.md")
TOP_FOLDERS = ("device", "trainer", "deploy", "studio", "tests", "benchmarks", "docs", "scripts", "requirements",
               "murmur")
# A top folder, then path characters; not inside another path or address (/etc/murmur/…, http://…/studio/…).
REPO_PATH = re.compile(rf"(?<![\w/.~-])(?:{'|'.join(TOP_FOLDERS)})/[\w./-]*")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
# Files the user makes, named where the docs tell how: not in the repository.
USER_MADE = {"deploy/inventory.toml"}  # the fleet's inventory, copied from deploy/inventory.example.toml


def repo_paths(text: str) -> set[str]:
    """The repository paths named in ``text``, trailing punctuation removed (``device/x.py,`` -> ``device/x.py``)."""
    return {match.rstrip(".,:;-") for match in REPO_PATH.findall(text)}


DOTTED = re.compile(r"\bmurmur\.(?:device|trainer|deploy|studio)(?:\.\w+)*")


def dotted_problem(name: str, root: Path = REPO_ROOT) -> str | None:
    """Why ``murmur.a.b.c`` does not resolve (the longest prefix that is a module, then a name it defines), or None."""
    parts = name.split(".")[1:]
    for cut in range(len(parts), 0, -1):
        folder = root / Path(*parts[:cut])
        module = folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")
        if module.is_file():
            break
    else:
        return f"{name}: no such module"
    rest = parts[cut:]
    if not rest:
        return None
    defined = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
    if rest[0] not in defined and not (module.parent / rest[0]).exists():
        return f"{name}: {module.relative_to(root)} defines no {rest[0]!r}"
    return None


def missing_paths(doc: Path, root: Path = REPO_ROOT) -> list[str]:
    """What ``doc`` names or links that does not exist: repository paths under ``root``, links beside ``doc``."""
    text = doc.read_text()
    missing = [f"{path} (named)" for path in sorted(repo_paths(text) - USER_MADE) if not (root / path).exists()]
    for target in sorted(set(MARKDOWN_LINK.findall(text))):
        if "://" not in target and not target.startswith("mailto:") and not (doc.parent / target).exists():
            missing.append(f"{target} (linked)")
    missing += [problem for name in sorted(set(DOTTED.findall(text))) if (problem := dotted_problem(name, root))]
    return missing


@pytest.mark.parametrize("name", DOCS)
def test_every_path_a_doc_names_exists(name):
    doc = REPO_ROOT / name
    assert doc.is_file(), f"{name}: the document itself is missing"
    missing = missing_paths(doc)
    assert not missing, f"{name} names paths that do not exist; fix the text or the path:\n" + "\n".join(missing)


def test_the_path_finder_finds_paths_and_skips_the_pis_own(tmp_path):
    text = ("see `device/generate/bank.py`, tests/device/playback/test_sinks.py; the unit (deploy/murmur.service). "
            "On the Pi: /etc/murmur/murmur.toml, /opt/murmur/current/device/x.py; https://example.org/studio/x")
    assert repo_paths(text) == {"device/generate/bank.py", "tests/device/playback/test_sinks.py",
                                "deploy/murmur.service"}
    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "here.py").write_text("")
    doc = tmp_path / "doc.md"
    (tmp_path / "device" / "__init__.py").write_text("")
    (tmp_path / "device" / "here.py").write_text("import os\nLIMIT = 1\n\n\nclass Thing:\n    pass\n")
    doc = tmp_path / "doc.md"
    doc.write_text("[gone](gone.md), [here](device/here.py#L1), `device/no_such_module.py`, device/here.py, "
                   "[site](https://example.org), murmur.device.here.Thing.method, murmur.device.here.LIMIT, "
                   "murmur.device.here.Gone, murmur.device.gone, /etc/murmur/murmur.toml")
    assert missing_paths(doc, root=tmp_path) == [
        "device/no_such_module.py (named)", "gone.md (linked)", "murmur.device.gone: device/__init__.py defines no 'gone'",
        "murmur.device.here.Gone: device/here.py defines no 'Gone'"]
