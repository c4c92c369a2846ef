"""axe-core, the automated accessibility checker, for the studio's browser test: from the npm registry only, into
out/node/ (git-ignored, kept between runs), at the version pinned here; nothing else is downloaded.

``axe_script()`` -> the text of axe.min.js (pytest.skip when npm is missing: ``apt install npm``);
``AXE_RUN`` runs it on the page (``execute_async_script``) and returns the violations.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from murmur import REPO_ROOT

AXE_VERSION = "4.14.1"  # `npm view axe-core version` when it was pinned
NODE_DIR = REPO_ROOT / "out" / "node"
AXE_JS = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"

# WCAG 2.1 A and AA rules and axe's best practices; the result's violations with their impact and the failing nodes
AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } })
  .then((r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                                  nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": " + n.failureSummary) }))))
  .catch((e) => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]));
"""


def axe_script() -> str:
    installed = NODE_DIR / "node_modules" / "axe-core" / "package.json"
    if not (AXE_JS.is_file() and f'"version": "{AXE_VERSION}"' in installed.read_text()):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("the accessibility check needs npm (apt install npm) to fetch axe-core from the npm registry")
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(NODE_DIR), "--no-save", "--no-audit", "--no-fund",
                        "--ignore-scripts", f"axe-core@{AXE_VERSION}"], check=True, timeout=300)
    return AXE_JS.read_text()
