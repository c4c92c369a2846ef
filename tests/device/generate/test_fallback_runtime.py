"""The tflite-runtime fallback plays, not only steps: the whole render path under tflite-runtime 2.14 + numpy 1.x."""

import os
import subprocess
import wave

import numpy as np

from murmur import REPO_ROOT as ROOT

TFLITE_RUNTIME_PYTHON = ROOT / ".venv" / "tflite-runtime" / "bin" / "python"


def test_render_under_tflite_runtime_and_numpy_1(tiny_bundle, tmp_path):
    assert TFLITE_RUNTIME_PYTHON.exists(), "no .venv/tflite-runtime: run `make setup`"
    out = tmp_path / "fallback.wav"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MURMUR_TFLITE_RUNTIME="tflite_runtime")
    result = subprocess.run(
        [str(TFLITE_RUNTIME_PYTHON), "-c",
         "import sys, numpy; from murmur.device.cli import main; print('numpy', numpy.__version__, file=sys.stderr);"
         "sys.exit(main(sys.argv[1:]))",
         "render", "--bundle", str(tiny_bundle), "--seconds", "1", "--out", str(out), "--seed", "3", "--verbose"],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "numpy 1." in result.stderr and "TFLite runtime: tflite_runtime" in result.stderr
    with wave.open(str(out)) as wav:
        rate, n = wav.getframerate(), wav.getnframes()
        samples = np.frombuffer(wav.readframes(n), dtype=np.int16)
    assert n == rate  # exactly one second
    assert np.sqrt(np.mean((samples / 32768.0) ** 2)) > 1e-3  # audible, not silence
