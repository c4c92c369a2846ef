"""Pick the TFLite interpreter in one place: ai-edge-litert, then tflite-runtime, then TensorFlow's own.

``MURMUR_TFLITE_RUNTIME`` (``ai_edge_litert`` | ``tflite_runtime`` | ``tensorflow``) forces one of them, like
gpiozero's ``GPIOZERO_PIN_FACTORY``. The runtime is imported only here, so everything else runs without it.
``quiet_delegate_notice`` keeps the runtime's "Created ... XNNPACK delegate" line out of the user's terminal.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from murmur.device.errors import RuntimeNotFound

log = logging.getLogger(__name__)

ENV_VAR = "MURMUR_TFLITE_RUNTIME"
# runtime name -> (module to import, attribute holding the Interpreter class)
RUNTIMES: dict[str, tuple[str, str]] = {
    "ai_edge_litert": ("ai_edge_litert.interpreter", "Interpreter"),
    "tflite_runtime": ("tflite_runtime.interpreter", "Interpreter"),
    "tensorflow": ("tensorflow.lite", "Interpreter"),
}
PIP_FIX = "pip install -r requirements/device.txt  (installs ai-edge-litert; on the Pi: /opt/murmur/current/venv/bin/pip)"

_cache: dict[str, tuple[type, str]] = {}


def load_interpreter_class(preferred: str | None = None) -> tuple[type, str]:
    """The first importable TFLite ``Interpreter`` class and its runtime name. Raises RuntimeNotFound.

    ``preferred`` (or the ``MURMUR_TFLITE_RUNTIME`` environment variable) names the one runtime to use.
    """
    choice = (preferred or os.environ.get(ENV_VAR, "")).strip()
    if choice:
        if choice not in RUNTIMES:
            raise RuntimeNotFound(
                f"{ENV_VAR}={choice!r} is not a known TFLite runtime; use one of {', '.join(RUNTIMES)} or unset it"
            )
        order = [choice]
    else:
        order = list(RUNTIMES)
    key = ",".join(order)
    if key in _cache:
        return _cache[key]
    failures: list[str] = []
    for name in order:
        module_name, attribute = RUNTIMES[name]
        try:
            module = importlib.import_module(module_name)
            interpreter_class: Any = getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            failures.append(f"{name}: {exc}")
            continue
        log.info("TFLite runtime: %s (%s.%s)", name, module_name, attribute)
        _cache[key] = (interpreter_class, name)
        return interpreter_class, name
    raise RuntimeNotFound(
        f"no TFLite runtime could be imported (tried {'; '.join(failures)}); fix: {PIP_FIX}"
    )


# What the C++ runtime writes to stderr (once per process) when it applies its default CPU delegate: not news to a user.
DELEGATE_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def _capture_file() -> int:
    """A file descriptor for what fd 2 receives meanwhile: in memory where Linux offers it (nothing reaches the Pi's
    SD card), else an unnamed temporary file. Raises OSError."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("murmur-stderr")
        except OSError:
            pass
    with tempfile.TemporaryFile() as spill:
        return os.dup(spill.fileno())


_stderr_lock = threading.RLock()  # one redirection of fd 2 at a time: two interleaved would restore the wrong one


@contextmanager
def quiet_delegate_notice() -> Iterator[None]:
    """Around building an interpreter (construction to ``allocate_tensors``): drop the runtime's delegate notice.

    The runtime writes it from C++ straight to file descriptor 2, so ``sys.stderr`` cannot catch it: fd 2 points at
    a capture file meanwhile, and afterwards every other line written to it (a real error from the runtime, or from
    another thread) goes to the real stderr, in order. Without a usable fd 2 it filters nothing.
    """
    with _stderr_lock:
        saved = capture = -1
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            capture = _capture_file()
        except (OSError, ValueError):  # no fd 2 (a daemon), or no file to capture into: leave stderr as it is
            if saved >= 0:
                os.close(saved)
            saved = -1
        if saved < 0:
            yield
            return
        try:
            os.dup2(capture, 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                with os.fdopen(os.dup(capture), "rb") as written:
                    written.seek(0)
                    kept = [line for line in written.read().splitlines(keepends=True)
                            if line.rstrip(b"\r\n") != DELEGATE_NOTICE]
                if kept:
                    with os.fdopen(os.dup(2), "wb") as stderr:
                        stderr.write(b"".join(kept))
        finally:
            os.close(capture)
            os.close(saved)
