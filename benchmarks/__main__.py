"""Run the benchmark sections and write BENCHMARKS.md (see benchmarks/__init__.py)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import re
import sys
import time

import benchmarks
from murmur import REPO_ROOT as ROOT

OUTPUT = ROOT / "BENCHMARKS.md"
HEADER = """# Benchmarks

Written by `make bench` (`python -m benchmarks`); `make bench ARGS="--only NAME"` reruns one section and keeps
the others. Figures come from a noisy 2-core machine: trust ratios more than absolute times.
"""


def discover() -> list[str]:
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))


def read_sections(text: str) -> dict[str, str]:
    """Existing sections keyed by name, from the `<!-- bench:NAME -->` markers."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench -->", text, re.S)}


def main() -> int:
    names = discover()
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=names,
                        help="sections to run (default: all but those that run for hours, e.g. endurance)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke check, figures not for the record)")
    args = parser.parse_args()
    for name in args.only or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        if not args.only and not getattr(module, "DEFAULT", True):
            print(f"== bench {name}: skipped (run it with --only {name}) ==", flush=True)
            continue
        print(f"== bench {name} ==", flush=True)
        started = time.monotonic()
        body = module.run(quick=args.quick)
        stamp = f"_{time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}, {time.monotonic() - started:.0f} s_"
        print(body, flush=True)
        if not args.quick:
            # read again: another bench may have written its section while this one ran (hours, for endurance)
            sections = read_sections(OUTPUT.read_text()) if OUTPUT.exists() else {}
            sections[name] = f"{body.strip()}\n\n{stamp}"
            write(sections)
    return 0


def write(sections: dict[str, str]) -> None:
    parts = [HEADER]
    for name in sorted(sections):
        parts.append(f"<!-- bench:{name} -->\n{sections[name]}\n<!-- /bench -->\n")
    OUTPUT.write_text("\n".join(parts))


if __name__ == "__main__":
    sys.exit(main())
