"""Step a bundle's model with the legacy ``tflite_runtime`` package (run by ``.venv/tflite-runtime``'s Python).

Standalone on purpose: that venv has only tflite-runtime 2.14 and numpy < 2, no trainer or TensorFlow.
Usage: ``python trainer/tflite_runtime_probe.py MODEL.tflite FRAMES.npy OUT.npy META.json`` where FRAMES is
(n, n_bins) float32 in model units and META holds bundle.json's ``model`` table; writes the (n, n_bins)
predicted frames to OUT, states carried from step to step.
"""

import json
import sys

import numpy as np
from tflite_runtime.interpreter import Interpreter


def main(model_path: str, frames_path: str, out_path: str, meta_path: str) -> int:
    model = json.load(open(meta_path))["model"]
    interpreter = Interpreter(model_path=model_path, num_threads=1)
    runner = interpreter.get_signature_runner(model["signature"])
    states = {name: np.zeros((1, size), np.float32) for name, size in zip(model["input_states"], model["state_sizes"], strict=True)}
    frames = np.load(frames_path)
    outputs = np.empty_like(frames)
    for i, frame in enumerate(frames):
        out = runner(**{model["input_frame"]: frame[None].astype(np.float32)}, **states)
        outputs[i] = out[model["output_frame"]][0]
        states = {name: out[o] for name, o in zip(model["input_states"], model["output_states"], strict=True)}
    np.save(out_path, outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
