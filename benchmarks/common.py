"""Helpers shared by benchmark sections: the default model trained once on the demo clip.

``trained_demo_bundle()`` runs the real command a user runs (``python -m murmur.trainer train trainer/demo/demo.ogg``,
default options) the first time and reuses the bundle under ``out/bench/`` afterwards, as long as it still loads
and was made by the same trainer code (a hash of ``trainer/*.py`` is kept beside it).
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from murmur import REPO_ROOT as ROOT

BENCH_OUT = ROOT / "out" / "bench"
DEMO_CLIP = ROOT / "trainer" / "demo" / "demo.ogg"
DEMO_BUNDLE = BENCH_OUT / "demo_bundle"
STAMP = BENCH_OUT / "demo_bundle.trainer-hash"


@dataclass
class TrainRun:
    """One timed run of the train command: wall seconds, peak RSS of the child (bytes), exit code, stderr."""

    bundle: Path
    wall_s: float
    peak_rss_bytes: int
    returncode: int
    stderr: str


def code_digest(paths: list[Path]) -> str:
    """SHA-256 (16 hex) of what the Python files do: their syntax trees without docstrings and type annotations,
    so editing a comment, a docstring or a type hint keeps a cached bundle, and any change to the code retrains
    it."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                node.returns = None
            elif isinstance(node, ast.arg):
                node.annotation = None
            elif isinstance(node, ast.AnnAssign):  # a dataclass field stays a field: its annotation becomes "_"
                node.annotation = ast.Name("_")
        for node in ast.walk(tree):  # outside class bodies, ``x: T = v`` is ``x = v``
            if not isinstance(node, ast.ClassDef) and isinstance(getattr(node, "body", None), list):
                node.body = [ast.Assign([n.target], n.value, lineno=0) if isinstance(n, ast.AnnAssign)
                             and n.value is not None else n for n in node.body]
        digest.update(str(path.relative_to(ROOT)).encode() + ast.dump(tree).encode())
    return digest.hexdigest()[:16]


def trainer_code_hash() -> str:
    """code_digest of trainer/*.py: the demo bundle is trained again when it changes."""
    return code_digest(list((ROOT / "trainer").glob("*.py")))


def run_train(out: Path, *extra: str, minutes: float = 3.0, cache: Path | None = None,
              clip: Path = DEMO_CLIP) -> TrainRun:
    """``python -m murmur.trainer train CLIP --out OUT`` (the demo clip unless told) as a child process; peak RSS from its
    own rusage (wait4)."""
    import time

    cmd = [sys.executable, "-m", "murmur.trainer", "train", str(clip), "--out", str(out), "--minutes", str(minutes), *extra]
    if cache is not None:
        cmd += ["--cache", str(cache)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    with open(BENCH_OUT / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return TrainRun(out, wall, int(usage.ru_maxrss) * 1024, proc.returncode, (BENCH_OUT / "train.log").read_text())


def trained_demo_bundle() -> Path:
    """The default model trained on the demo clip (cached under out/bench/); raises RuntimeError if training fails."""
    from murmur.device.bundle import load_bundle
    from murmur.device.errors import BundleError

    BENCH_OUT.mkdir(parents=True, exist_ok=True)
    code = trainer_code_hash()
    if DEMO_BUNDLE.is_dir() and STAMP.is_file() and STAMP.read_text().strip() == code:
        try:
            load_bundle(DEMO_BUNDLE)
            return DEMO_BUNDLE
        except BundleError:
            pass
    run = run_train(DEMO_BUNDLE, "--preview-seconds", "0", "--name", "demo")
    if run.returncode != 0:
        raise RuntimeError(f"training the demo bundle failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    STAMP.write_text(code + "\n")
    return DEMO_BUNDLE
