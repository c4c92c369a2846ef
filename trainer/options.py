"""The trainer's options (what the CLI exposes), apart from the modules that import TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUANTISATIONS = ("dynamic", "float16", "float32")
OBJECTIVES = ("retrieval", "mse")
EXPORT_RESERVE_S = 25.0  # part of the budget kept for conversion, parity check and writing


@dataclass
class TrainOptions:
    """Everything the CLI exposes. Defaults are the measured choice (see benchmarks/bench_trainer.py)."""

    minutes: float = 3.0
    units: int = 192
    layers: int = 3
    seq_len: int = 64
    batch_size: int = 32
    input_noise: float = 0.5
    dropout: float = 0.3
    learning_rate: float = 1e-3
    patience: int = 8
    max_epochs: int = 1000
    sample_rate_hz: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    quantisation: str = "dynamic"
    objective: str = "mse"
    retrieval_temperature: float = 0.3
    seed: int = 0
    val_fraction: float = 0.1
    cache_dir: Path | None = None
    name: str | None = None
    export_reserve_s: float = EXPORT_RESERVE_S

    def check(self) -> None:
        if self.quantisation not in QUANTISATIONS:
            raise ValueError(f"--quantisation {self.quantisation!r}: choose one of {', '.join(QUANTISATIONS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if not self.retrieval_temperature > 0:
            raise ValueError(f"--retrieval-temperature {self.retrieval_temperature} must be > 0")
        for key in ("units", "layers", "seq_len", "batch_size", "patience", "max_epochs"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} {getattr(self, key)} must be at least 1")
        if not self.minutes > 0:
            raise ValueError(f"--minutes {self.minutes} must be > 0")
