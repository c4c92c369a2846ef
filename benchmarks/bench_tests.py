"""The test loop: wall time of the whole suite (`make test`) and of the fast one (`make test-fast`, no tests marked
slow), with their pass/skip counts; and the last `make test-arm64` run's figures (out/arm64/result.json)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from murmur import REPO_ROOT as ROOT

ARM64_RESULT = ROOT / "out" / "arm64" / "result.json"
FAST_TARGET_S = 60.0


def _counts(text: str) -> dict[str, int]:
    """pytest's summary line -> {"passed": n, "skipped": n, "failed": n, "deselected": n, …}."""
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary[-1])} if summary else {}


def _suite(*args: str) -> tuple[float, dict[str, int], int]:
    """Run pytest as `make test` does (this venv, -p no:cacheprovider) -> (wall s, counts, exit code)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return time.monotonic() - started, _counts(proc.stdout), proc.returncode


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "skipped", "deselected") if counts.get(k))


def run(quick: bool) -> str:
    load = os.getloadavg()[0]
    fast_s, fast, fast_rc = _suite("-m", "not slow")
    if quick:
        full_s, full, full_rc = float("nan"), {}, 0
    else:
        full_s, full, full_rc = _suite()
    rows = [
        ("`make test-fast` (`pytest -m \"not slow\"`)", f"{fast_s:.0f} s; {_fmt(fast)}", f"≤ {FAST_TARGET_S:.0f} s, 0 failed",
         fast_s <= FAST_TARGET_S and fast_rc == 0),
        ("`make test` (the whole suite)", "not run (quick)" if quick else f"{full_s:.0f} s; {_fmt(full)}", "0 failed",
         full_rc == 0),
    ]
    if ARM64_RESULT.is_file():
        arm = json.loads(ARM64_RESULT.read_text())
        tests_line = next((line for line in reversed(arm.get("lines", [])) if re.search(r"\d+ passed", line)), "")
        arm_counts = _counts(tests_line)
        rows.append((f"`make test-arm64` (last run {arm.get('date', '?')}; root build/reuse {arm.get('root_build_s', '?')} s)",
                     f"{arm.get('wall_s', '?')} s; {_fmt(arm_counts) or 'no test line'}",
                     "passes, ≤ a handful skipped", bool(arm.get("passed")) and arm_counts.get("skipped", 99) <= 10))
    else:
        rows.append(("`make test-arm64`", "no result (run `make test-arm64` first)", "passes", False))
    table = "\n".join(f"| {a} | {b} | {c} | {'ok' if d else '**MISSED**'} |" for a, b, c, d in rows)
    return f"""## Tests: the loop

`make bench ARGS="--only tests"` — times the suites as `make test-fast` and `make test` run them
(load average {load:.1f} on {os.cpu_count()} cores when it began: other work on the machine slows them).

| suite | wall, counts | target | |
|---|---|---|---|
{table}

Slow tests are marked `@pytest.mark.slow` (training real models, deploys over ssh to loopback `sshd`s). On
arm64 the device tests run under qemu with trained bundles built on the laptop (`$MURMUR_TEST_BUNDLES`),
and the vocoder's reference clips come the same way; what is skipped there needs the laptop's other venvs, its
`make`, real GPIO or a kernel with PR_SET_MDWE.
"""
