"""The bundle's one-frame TFLite step model, called once per frame with its LSTM state carried along.

Inputs and outputs are found by their signature names (bundle.json ``model``), never by position: the tensors in
the ``.tflite`` file are not in Keras order. The per-frame path writes into and reads from numpy views
of the interpreter's own tensor buffers, resolved once at open (the fastest of the call paths BENCHMARKS.md
compares, section "Engine"); the public ``set_tensor/invoke/get_tensor`` path is the fallback and the reference
the fast path is checked against when the model is opened.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import numpy as np

from murmur.device.bundle import Bundle, load_bundle
from murmur.device.errors import BundleError
from murmur.device.generate.runtime import load_interpreter_class, quiet_delegate_notice

log = logging.getLogger(__name__)


class StepModel:
    """One-frame step model: ``step(frame (n_bins,) float32) -> next frame (n_bins,) float32``, model units.

    The LSTM state lives in the interpreter's input tensors: after every step each ``output_states[i]`` is copied
    into ``input_states[i]``. ``get_state``/``set_state`` move it in and out (the sampler keeps a second chain
    warming up on seed frames). One thread, tensors allocated once, no allocation per step.
    """

    def __init__(self, bundle: Bundle, *, runtime: str | None = None, num_threads: int = 1, fast_path: bool = True):
        self.bundle = bundle
        self.n_bins = bundle.audio.n_bins
        self.state_sizes = tuple(bundle.model.state_sizes)
        model_path = bundle.model_path
        interpreter_class, self.runtime_name = load_interpreter_class(runtime)
        spec = bundle.model
        with quiet_delegate_notice():  # the runtime's "Created ... XNNPACK delegate" line, from construction on
            try:
                interpreter = interpreter_class(model_path=str(model_path), num_threads=num_threads)
                signatures = interpreter.get_signature_list()
            except Exception as exc:  # the runtimes raise ValueError/RuntimeError with their own messages
                raise BundleError(
                    f"{model_path}: the TFLite runtime ({self.runtime_name}) cannot load this model ({exc}); "
                    "the file is damaged or was made by an incompatible exporter: re-export the bundle"
                ) from exc
            if spec.signature not in signatures:
                raise BundleError(
                    f"{model_path}: no signature {spec.signature!r} (the model has {sorted(signatures)}); "
                    "bundle.json and the model disagree: re-export the bundle"
                )
            runner = interpreter.get_signature_runner(spec.signature)
            input_details = runner.get_input_details()
            output_details = runner.get_output_details()
            del runner  # it holds a reference that blocks invoke() on the same interpreter
            self._check_names_and_shapes(model_path, input_details, output_details)
            try:
                interpreter.allocate_tensors()
            except Exception as exc:
                raise BundleError(f"{model_path}: the runtime cannot allocate the model's tensors ({exc}); "
                                  "re-export the bundle") from exc
        self._interpreter = interpreter
        self._in_frame = int(input_details[spec.input_frame]["index"])
        self._out_frame = int(output_details[spec.output_frame]["index"])
        self._in_states = [int(input_details[name]["index"]) for name in spec.input_states]
        self._out_states = [int(output_details[name]["index"]) for name in spec.output_states]
        self._frame_in = np.zeros((1, self.n_bins), dtype=np.float32)
        self._frame_out = np.zeros(self.n_bins, dtype=np.float32)
        self._states = [np.zeros((1, size), dtype=np.float32) for size in self.state_sizes]
        self._views: tuple | None = None
        self.fast_path = False
        if fast_path:
            self._enable_fast_path()
        self.reset()

    # -- checks at open ---------------------------------------------------------------------------------------
    def _check_names_and_shapes(self, model_path, input_details: dict, output_details: dict) -> None:
        spec = self.bundle.model
        expected_in = {spec.input_frame: self.n_bins} | dict(zip(spec.input_states, self.state_sizes, strict=True))
        expected_out = {spec.output_frame: self.n_bins} | dict(zip(spec.output_states, self.state_sizes, strict=True))
        for kind, details, expected in (("input", input_details, expected_in), ("output", output_details, expected_out)):
            missing = sorted(set(expected) - set(details))
            extra = sorted(set(details) - set(expected))
            if missing or extra:
                raise BundleError(
                    f"{model_path}: signature {spec.signature!r} {kind}s are {sorted(details)}, bundle.json names "
                    f"{sorted(expected)} (missing {missing}, unexpected {extra}); re-export the bundle"
                )
            for name, width in expected.items():
                shape = tuple(int(d) for d in details[name]["shape"])
                dtype = np.dtype(details[name]["dtype"])
                if shape != (1, width) or dtype != np.float32:
                    raise BundleError(
                        f"{model_path}: {kind} {name!r} has shape {shape} {dtype}, bundle.json implies (1, {width}) "
                        f"float32 (n_fft={self.bundle.audio.n_fft}, state_sizes={list(self.state_sizes)}); "
                        "re-export the bundle"
                    )

    def _enable_fast_path(self) -> None:
        """Hold numpy views of the tensor buffers (the wrapper's ``tensor``; tensors are never reallocated)."""
        wrapper = getattr(self._interpreter, "_interpreter", None)
        if wrapper is None or not hasattr(wrapper, "tensor") or not hasattr(wrapper, "Invoke"):
            log.info("step model: runtime %s has no raw tensor views; using set_tensor/invoke", self.runtime_name)
            return
        try:
            frame_in = wrapper.tensor(wrapper, self._in_frame).reshape(-1)
            frame_out = wrapper.tensor(wrapper, self._out_frame).reshape(-1)
            states_in = [wrapper.tensor(wrapper, i) for i in self._in_states]
            states_out = [wrapper.tensor(wrapper, i) for i in self._out_states]
        except Exception as exc:  # an unexpected wrapper: the public path still works
            log.info("step model: raw tensor views unavailable (%s); using set_tensor/invoke", exc)
            return
        self._views = (wrapper.Invoke, frame_in, frame_out, list(zip(states_in, states_out, strict=True)))
        self.fast_path = True

    # -- state --------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero the LSTM state (the state a sequence starts from in training)."""
        if self._views is not None:
            for state_in, _ in self._views[3]:
                state_in.fill(0.0)
        for state in self._states:
            state.fill(0.0)

    def new_state(self) -> list[np.ndarray]:
        """Zeroed arrays shaped like the state, for ``get_state(out=…)`` / ``set_state``."""
        return [np.zeros((1, size), dtype=np.float32) for size in self.state_sizes]

    def get_state(self, out: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Copy the current state (the one the next step reads) into ``out`` (made if None): [(1, size_i)]."""
        if out is None:
            out = self.new_state()
        sources = [pair[0] for pair in self._views[3]] if self._views is not None else self._states
        for target, source in zip(out, sources, strict=True):
            np.copyto(target, source)
        return out

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        """Make ``state`` (from ``get_state``) the state the next step reads."""
        targets = [pair[0] for pair in self._views[3]] if self._views is not None else self._states
        for target, source in zip(targets, state, strict=True):
            np.copyto(target, source)

    # -- the per-frame call -----------------------------------------------------------------------------------
    def step(self, frame: np.ndarray) -> np.ndarray:
        """Frame (n_bins,) float32 model units -> next frame (n_bins,) float32, a view valid until the next step."""
        if self._views is not None:
            invoke, frame_in, frame_out, state_pairs = self._views
            np.copyto(frame_in, frame)
            invoke()
            for state_in, state_out in state_pairs:
                np.copyto(state_in, state_out)
            np.copyto(self._frame_out, frame_out)
            return self._frame_out
        interpreter = self._interpreter
        self._frame_in[0] = frame
        interpreter.set_tensor(self._in_frame, self._frame_in)
        for index, state in zip(self._in_states, self._states, strict=True):
            interpreter.set_tensor(index, state)
        interpreter.invoke()
        for i, index in enumerate(self._out_states):
            self._states[i] = interpreter.get_tensor(index)
        self._frame_out[:] = interpreter.get_tensor(self._out_frame)[0]
        return self._frame_out

    def time_step_ms(self, n_steps: int = 500, clock=time.perf_counter) -> float:
        """Mean time of one ``step`` in ms (wall clock, or e.g. ``time.thread_time`` for CPU time), from the current
        state (restored afterwards)."""
        saved = self.get_state()
        frame = self.bundle.seed_frames(0, 1)[0]
        for _ in range(20):
            frame = self.step(frame)
        started = clock()
        for _ in range(n_steps):
            self.step(frame)
        elapsed = clock() - started
        self.set_state(saved)
        return elapsed / n_steps * 1e3


def open_step_model(bundle: Bundle, *, runtime: str | None = None, check_steps: int = 8) -> StepModel:
    """Open the bundle's model and prove it runs: ``check_steps`` steps on seed frames, finite outputs, and the
    fast path equal to the public ``set_tensor/invoke/get_tensor`` path. Raises BundleError otherwise."""
    model = StepModel(bundle, runtime=runtime)
    count = max(1, min(check_steps, bundle.n_seed_frames))
    frames = bundle.seed_frames(0, count)
    outputs = np.empty((count, model.n_bins), dtype=np.float32)
    try:
        for t in range(count):
            outputs[t] = model.step(frames[t])
    except (RuntimeError, ValueError) as exc:  # an op the runtime cannot run fails here, at invoke
        raise BundleError(
            f"{bundle.model_path}: the TFLite runtime ({model.runtime_name}) fails running this model ({exc}); "
            "re-export the bundle with builtin ops only"
        ) from exc
    state_after = model.get_state()
    bad = ~np.isfinite(outputs)
    if bad.any() or not all(np.isfinite(s).all() for s in state_after):
        raise BundleError(
            f"{bundle.model_path}: the model produced non-finite values ({int(bad.sum())} of {bad.size} output "
            f"numbers over {count} test steps with runtime {model.runtime_name}); the export is broken (a model "
            "without weights returns NaN): re-export the bundle"
        )
    if model.fast_path:
        reference = StepModel(bundle, runtime=runtime, fast_path=False)
        for t in range(count):
            expected = reference.step(frames[t])
            if not np.array_equal(expected, outputs[t]):
                log.warning("step model: fast path differs from set_tensor/invoke (step %d); using the public path", t)
                model = reference
                break
    model.reset()
    return model


def open_bundle(path: str | os.PathLike[str], *, runtime: str | None = None) -> tuple[Bundle, StepModel]:
    """Load the bundle directory ``path`` (``load_bundle``: files, checksums, settings, arrays) and open its model
    (``open_step_model``: loads and steps it) -> (bundle, model). The one way to prove a bundle plays here, before
    it goes live (``verify``, ``serve --check``). Raises BundleError."""
    bundle = load_bundle(path)
    return bundle, open_step_model(bundle, runtime=runtime)
