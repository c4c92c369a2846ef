"""The pip route on a bare machine: a Debian 12 (Bookworm) x86_64 root holding only python3 and python3-venv (no
compiler, no -dev package, no libsndfile), where ``pip install "/src[trainer,studio]"`` installs from wheels alone,
then ``murmur demo`` trains the bundled clip and ``murmur render`` renders the bundle.

`make bench ARGS="--only pip"`, as root (not part of a plain `make bench`: it fetches ~600 MB of wheels and builds a
root). Like `make test-arm64` (tests/arm64/run.sh): the root is built once by mmdebstrap and cached under
out/pip-root/ (keyed by a hash of what it is built from); every run works in a fresh copy of it; the host's pip fetches
the wheels (its proxy and CA settings apply; the root has neither) and the root's pip installs them with --no-index;
mounts live in a private mount namespace (unshare -m) that vanishes with the run. The code is what a clone gets:
``git archive HEAD`` (MURMUR_BENCH_PIP_WORKTREE=1: the tracked files as they are in the working tree).
Result: out/pip-root/result.json, log out/pip-root/last-run.log.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from murmur import REPO_ROOT as ROOT

DEFAULT = False  # run only when named: `make bench ARGS="--only pip"`


WORK = ROOT / "out" / "pip-root"
WHEELS = WORK / "wheels"
RUN = WORK / "run"
LOG = WORK / "last-run.log"
RESULT = WORK / "result.json"

SUITE = "bookworm"
MIRROR = os.environ.get("MURMUR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
VARIANT = "minbase"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
RECIPE = 1  # bump when the way the root is built changes
PYTHON_VERSION = "3.11"  # Bookworm's python3
EXTRAS = "trainer,studio"
DEMO_MINUTES = 1.0
RENDER_SECONDS = 10.0
WORKTREE = os.environ.get("MURMUR_BENCH_PIP_WORKTREE") == "1"
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc-12")

INSIDE = r"""#!/bin/sh
# Runs INSIDE the bare root (chroot, no network): venv, pip from /wheels only, then the demo and a render.
set -eu
now() { date +%s.%N; }
took() { echo "pip-root: time $1 $(echo "$2 $(now)" | awk '{printf "%.1f", $2 - $1}')"; }
. /etc/os-release
echo "pip-root: fact system $PRETTY_NAME, $(uname -m), $(python3 --version)"
echo "pip-root: fact dpkg_packages $(dpkg-query -W -f='${binary:Package}\n' | wc -l)"
for c in COMPILERS; do
  if command -v "$c" >/dev/null 2>&1; then echo "pip-root: FAIL a compiler is present: $(command -v "$c")"; exit 1; fi
done
for p in libc6-dev python3-dev portaudio19-dev libsndfile1 libsystemd-dev; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "pip-root: FAIL $p is installed"; exit 1
  fi
done
echo "pip-root: fact compiler none"
t=$(now)
python3 -m venv /opt/venv
/opt/venv/bin/pip install -q --disable-pip-version-check --no-input --no-index --find-links /wheels \
  --only-binary=:all: "/src[EXTRAS]"
took pip_install "$t"
echo "pip-root: fact pip $(/opt/venv/bin/pip --version | cut -d' ' -f1-2)"
echo "pip-root: fact venv_packages $(/opt/venv/bin/pip list --format=freeze 2>/dev/null | wc -l)"
echo "pip-root: fact venv_mb $(du -sm /opt/venv | cut -f1)"
/opt/venv/bin/python - <<'PY'
import importlib.util, importlib.metadata as md
absent = [m for m in ("pyaudio", "systemd", "gpiozero") if importlib.util.find_spec(m) is not None]
assert not absent, f"installed although the laptop extras must not pull them: {absent}"
import aiohttp, numpy, soundfile
versions = {d: md.version(d) for d in ("tensorflow-cpu", "ai-edge-litert", "keras", "numpy", "librosa", "aiohttp")}
print("pip-root: fact versions " + ", ".join(f"{k} {v}" for k, v in versions.items()))
print("pip-root: fact absent PyAudio, systemd-python, gpiozero")
print(f"pip-root: fact libsndfile libsndfile {soundfile.__libsndfile_version__} from the soundfile wheel")
PY
cd /tmp
/opt/venv/bin/murmur --help >/dev/null
if [ -d /src/studio ]; then
  /opt/venv/bin/murmur studio --help >/dev/null
  /opt/venv/bin/python -c "import studio.server as s; assert (s.STATIC / 'index.html').is_file(); print('pip-root: fact studio importable, its page installed')"
fi
t=$(now)
MURMUR_CACHE=/tmp/cache /opt/venv/bin/murmur demo --out /tmp/demo --minutes DEMO_MINUTES
took demo "$t"
t=$(now)
/opt/venv/bin/murmur render --bundle /tmp/demo/bundle --seconds RENDER_SECONDS --out /tmp/render.wav --seed 1
took render "$t"
python3 - <<'PY'
import array, math, wave
for path in ("/tmp/demo/preview.wav", "/tmp/render.wav"):
    with wave.open(path) as w:
        n, rate, width = w.getnframes(), w.getframerate(), w.getsampwidth()
        samples = array.array("h", w.readframes(n))
    rms = math.sqrt(sum(s * s for s in samples) / max(1, len(samples))) / 32768
    db = 20 * math.log10(rms) if rms > 0 else -200.0
    print(f"pip-root: wav {path} {n / rate:.2f} {rate} {width * 8} {db:.1f}")
    assert db > -50, f"{path} is (nearly) silent: {db:.1f} dBFS"
PY
ls /tmp/demo/preview.png >/dev/null
echo "pip-root: PASS"
"""


def _say(message: str) -> None:
    print(f"bench pip: {message}", flush=True)


def root_key() -> str:
    recipe = {"suite": SUITE, "mirror": MIRROR, "variant": VARIANT, "packages": PACKAGES, "arch": "amd64", "recipe": RECIPE}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def preconditions() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (mmdebstrap, chroot and mounts in a private namespace need it)")
    if platform.machine() != "x86_64":
        problems.append(f"this builds an x86_64 root and runs it natively; this machine is {platform.machine()}")
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("unshare", "util-linux"), ("chroot", "coreutils"),
                          ("git", "git")):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is missing: apt-get install {package}")
    if problems:
        raise SystemExit("bench pip: cannot run here: " + "; ".join(problems))


def build_root() -> tuple[Path, float]:
    """The cached bare root (built by mmdebstrap if missing) and the seconds spent building it (0 = reused)."""
    base = WORK / f"base-{root_key()}"
    if (base / ".murmur-root-ok").is_file() and (base / "usr/bin/python3").exists():
        _say(f"reusing the root {base}")
        return base, 0.0
    for stale in WORK.glob("base-*"):
        shutil.rmtree(stale)
    tmp = base.with_name(base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _say(f"building a bare {SUITE} root with {', '.join(PACKAGES)} ({VARIANT})")
    started = time.monotonic()
    subprocess.run(["mmdebstrap", "--architectures=amd64", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
                    "--aptopt=Acquire::Retries \"3\"", SUITE, str(tmp), MIRROR], check=True)
    (tmp / ".murmur-root-ok").write_text(root_key() + "\n")
    tmp.rename(base)
    return base, time.monotonic() - started


def platform_options() -> list[str]:
    """pip's --platform/--python-version options for the root: CPython 3.11 on glibc 2.36 x86_64."""
    options = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for minor in range(17, 37):
        options += ["--platform", f"manylinux_2_{minor}_x86_64"]
    return options + ["--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64"]


def git_state() -> str:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not WORKTREE:
        return f"commit {sha}"
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT).returncode != 0
    return f"the working tree's tracked files at {sha}" + (" + uncommitted changes" if dirty else "")


def copy_source(dest: Path) -> int:
    """The code as a clone has it: ``git archive HEAD`` (or, with MURMUR_BENCH_PIP_WORKTREE=1, the tracked files as
    they are in the working tree) -> number of files."""
    dest.mkdir(parents=True, exist_ok=True)
    if not WORKTREE:
        archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        return sum(1 for p in dest.rglob("*") if p.is_file())
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = sorted(n for n in names.split("\0") if n and (ROOT / n).is_file())
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return len(files)


def fetch_wheels(source: Path) -> float:
    """The host's pip downloads every wheel the root's install needs (and setuptools for building murmur itself)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                           *platform_options(), "-d", str(WHEELS), f"{source}[{EXTRAS}]", "setuptools>=64"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench pip: the host's pip could not fetch the wheels (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    elapsed = time.monotonic() - started
    for leftover in [source / "build", *source.glob("*.egg-info")]:  # pip's in-tree metadata build on the host
        shutil.rmtree(leftover, ignore_errors=True)
    return elapsed


def mounted_below(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def fresh_run_root(base: Path) -> None:
    if RUN.exists():
        if mounted_below(RUN):
            raise SystemExit(f"bench pip: something is still mounted below {RUN}: {mounted_below(RUN)}; unmount it first")
        shutil.rmtree(RUN)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(RUN)], check=True)


def run_inside(log) -> int:
    script = (INSIDE.replace("COMPILERS", " ".join(COMPILERS)).replace("EXTRAS", EXTRAS)
              .replace("DEMO_MINUTES", f"{DEMO_MINUTES:g}").replace("RENDER_SECONDS", f"{RENDER_SECONDS:g}"))
    (RUN / "opt/inside.sh").write_text(script)
    (RUN / "wheels").mkdir(exist_ok=True)
    namespace = r"""
      mount -t proc proc "$R/proc"
      mount --rbind /dev "$R/dev"
      mount -t sysfs sysfs "$R/sys"
      mount --bind "$W" "$R/wheels"
      mount -o remount,bind,ro "$R/wheels"
      chroot "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 TF_CPP_MIN_LOG_LEVEL=2 \
        /bin/sh /opt/inside.sh
    """
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-eu", "-c", namespace],
                            env=dict(os.environ, R=str(RUN), W=str(WHEELS)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        if line.startswith(("pip-root:", "done in", "preview:", "Traceback", "ERROR", "error:")):
            print("  " + line.rstrip(), flush=True)
    return proc.wait()


def run(quick: bool) -> str:
    preconditions()
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base, root_s = build_root()
    fresh_run_root(base)
    git = git_state()
    n_files = copy_source(RUN / "src")
    _say(f"copied {n_files} files ({git}) to {RUN / 'src'}; fetching wheels with the host's pip")
    fetch_s = fetch_wheels(RUN / "src")
    wheels = sorted(WHEELS.glob("*.whl"))
    wheel_mb = sum(w.stat().st_size for w in wheels) / 1e6
    not_wheels = [p.name for p in WHEELS.iterdir() if p.suffix != ".whl"]
    _say(f"{len(wheels)} wheels ({wheel_mb:.0f} MB) in {WHEELS}; running the install in the root")
    with open(LOG, "w") as log:
        status = run_inside(log)
    text = LOG.read_text(errors="replace")
    times = {m[1]: float(m[2]) for m in re.finditer(r"^pip-root: time (\w+) ([\d.]+)$", text, re.M)}
    facts = {m[1]: m[2] for m in re.finditer(r"^pip-root: fact (\w+) (.*)$", text, re.M)}
    wavs = {Path(m[1]).name: (float(m[2]), int(m[3]), float(m[5])) for m in
            re.finditer(r"^pip-root: wav (\S+) ([\d.]+) (\d+) (\d+) (-?[\d.]+)$", text, re.M)}
    passed = status == 0 and "pip-root: PASS" in text
    done = next((line for line in text.splitlines() if line.startswith("done in")), "")
    wall = time.monotonic() - started
    RESULT.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "passed": passed,
                                  "git": git, "root_build_s": round(root_s, 1), "fetch_s": round(fetch_s, 1),
                                  "wheels": len(wheels), "wheel_mb": round(wheel_mb), "times_s": times, "facts": facts,
                                  "wavs": wavs, "wall_s": round(wall, 1)}, indent=1))
    if os.environ.get("MURMUR_BENCH_KEEP_ROOT") != "1" and not mounted_below(RUN):
        shutil.rmtree(RUN, ignore_errors=True)  # ~2 GB of venv; the cached base root stays
    return section(passed, status, text, root_s, fetch_s, len(wheels), wheel_mb, not_wheels, times, facts, wavs, done,
                   git)


def section(passed, status, text, root_s, fetch_s, n_wheels, wheel_mb, not_wheels, times, facts, wavs, done,
            git) -> str:
    head = f"""## Pip route: `pip install ".[{EXTRAS}]"` on a bare Debian 12

`make bench ARGS="--only pip"` (as root; a Bookworm x86_64 root with only {", ".join(PACKAGES)} ({VARIANT}),
no network inside)
"""
    if not passed:
        tail = "\n".join(text.splitlines()[-40:])
        return f"{head}\n**FAILED** (exit {status}); the end of out/pip-root/last-run.log:\n\n```\n{tail}\n```\n"
    ok = "ok"
    preview, render = wavs.get("preview.wav"), wavs.get("render.wav")
    train_render = times.get("demo", 0.0) + times.get("render", 0.0)
    rows = [
        ("the root", f"{facts.get('system', '?')}; {facts.get('dpkg_packages', '?')} Debian packages, no compiler, "
                     f"no -dev package, no libsndfile", "wheels alone", ok),
        ("building the root (mmdebstrap, cached in out/pip-root/)", "reused" if root_s == 0 else f"{root_s:.0f} s", "—", ""),
        ("wheels fetched by the host's pip (manylinux x86_64, cp311)",
         f"{n_wheels} wheels, {wheel_mb:.0f} MB, {fetch_s:.0f} s" + (f"; not wheels: {', '.join(not_wheels)}"
                                                                      if not_wheels else ""), "wheels only",
         ok if not not_wheels else "**MISSED**"),
        (f"`python3 -m venv` + `pip install --no-index --only-binary=:all: \"/src[{EXTRAS}]\"`",
         f"**{times.get('pip_install', 0):.0f} s**; {facts.get('venv_packages', '?')} packages, "
         f"{facts.get('venv_mb', '?')} MB ({facts.get('pip', 'pip')})", "no compiler", ok),
        ("left out", facts.get("absent", "?"), "no PyAudio, no systemd-python", ok),
        *([("`murmur studio`", facts["studio"], "installed with its page", ok)] if "studio" in facts else []),
        (f"`murmur demo --minutes {DEMO_MINUTES:g}` (start-up, train, export, {preview[0]:.0f}-s preview, sound check, "
         "picture)" if preview else "`murmur demo`",
         f"{times.get('demo', 0):.0f} s" + (f"; preview {preview[2]:.1f} dBFS RMS" if preview else ""),
         f"within its {DEMO_MINUTES:g}-min budget", ok if times.get("demo", 1e9) <= DEMO_MINUTES * 60 + 30 else "over"),
        (f"`murmur render --seconds {RENDER_SECONDS:g}`",
         f"{times.get('render', 0):.1f} s; {render[0]:.2f} s at {render[1]} Hz, {render[2]:.1f} dBFS RMS" if render
         else "?", "non-silent WAV", ok),
        ("**train + render** (the training time is the budget given, not a speed)", f"**{train_render:.0f} s**", "—", ""),
    ]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    return f"""{head}
| figure | measured | target | |
|---|---|---|---|
{table}

Versions installed: {facts.get('versions', '?')}; {facts.get('libsndfile', '')}. The trainer said: {done or '?'}.

How: mmdebstrap builds the root once (cached, keyed by suite, mirror, variant and package list); each run copies
it, copies in the code ({git}) as /src, and runs in a chroot in a private mount namespace with the
wheels bind-mounted read-only: `pip install --no-index --find-links /wheels --only-binary=:all: "/src[{EXTRAS}]"`
(pip builds murmur itself, pure Python, with setuptools from those wheels), then `murmur demo --out /tmp/demo
--minutes {DEMO_MINUTES:g}` and `murmur render --bundle /tmp/demo/bundle --seconds {RENDER_SECONDS:g} --seed 1`
from the venv's console script, all niced on a shared 2-core machine. The wheels are fetched beforehand by the host's
pip for CPython {PYTHON_VERSION} on manylinux x86_64 (the root has no network); their download time depends on the
network and is not part of the install figure.
"""
