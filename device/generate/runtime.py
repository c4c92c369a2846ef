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


_stderr_lock = threading.RLock()  # one redirection of fd 2 at a time: two interleaved would restore the wrong one
FORWARDER_JOIN_S = 5.0  # a child started meanwhile keeps the pipe open; its lines are still forwarded after this


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _forward_lines(read_end: int, out_fd: int) -> None:
    """Copy what arrives on the pipe to ``out_fd`` line by line as it comes, all but the delegate notice, until the
    pipe's last writer closes it; then close both."""
    pending = b""
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = [line + b"\n" for line in lines if line.rstrip(b"\r") != DELEGATE_NOTICE]
                if kept:
                    _write_all(out_fd, b"".join(kept))
        if pending and pending.rstrip(b"\r") != DELEGATE_NOTICE:
            _write_all(out_fd, pending)
    except OSError:  # stderr itself went away: nothing left to tell
        pass
    finally:
        os.close(out_fd)


@contextmanager
def quiet_delegate_notice() -> Iterator[None]:
    """Around building an interpreter (construction to ``allocate_tensors``): drop the runtime's delegate notice.

    The runtime writes it from C++ straight to file descriptor 2, so ``sys.stderr`` cannot catch it: meanwhile fd 2
    is a pipe, and a thread passes every other line on to the real stderr as it arrives (a real error from the
    runtime, or a line from another thread, is shown in order and as it comes, not held back until the end).
    Without a usable fd 2 it filters nothing.
    """
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no fd 2 (a daemon without one): leave it alone
            yield
            return
        try:
            read_end, write_end = os.pipe()
        except OSError:  # out of file descriptors: leave stderr alone
            os.close(saved)
            yield
            return
        forwarder = threading.Thread(target=_forward_lines, args=(read_end, os.dup(saved)),
                                     name="murmur-stderr-filter", daemon=True)
        forwarder.start()
        try:
            try:
                os.dup2(write_end, 2)
            finally:
                os.close(write_end)  # fd 2 is now the pipe's one write end
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)  # closes the pipe's last write end here: the forwarder reads to the end and stops
            os.close(saved)
            forwarder.join(FORWARDER_JOIN_S)
