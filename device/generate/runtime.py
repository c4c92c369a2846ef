"""Pick the TFLite interpreter in one place: ai-edge-litert, then tflite-runtime, then TensorFlow's own.

``MURMUR_TFLITE_RUNTIME`` (``ai_edge_litert`` | ``tflite_runtime`` | ``tensorflow``) forces one of them, like
gpiozero's ``GPIOZERO_PIN_FACTORY``. The runtime is imported only here, so everything else runs without it.
"""

from __future__ import annotations

import importlib
import logging
import os
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
