"""$MURMUR_TEST_BUNDLES: where there is no trainer (arm64), tiny_bundle_factory takes trained bundles built on the
laptop; a variant it lacks is a clear error, an unknown variant falls back to training."""

from __future__ import annotations

import shutil

import pytest
from conftest import PREBUILT_ENV, TINY_VARIANTS, _prebuilt


def test_prebuilt_bundles_are_found_by_variant(tmp_path, monkeypatch, tiny_bundle):
    monkeypatch.delenv(PREBUILT_ENV, raising=False)
    assert _prebuilt({}) is None  # not set: the fixture trains
    shutil.copytree(tiny_bundle, tmp_path / "default")
    monkeypatch.setenv(PREBUILT_ENV, str(tmp_path))
    assert _prebuilt({}) == tmp_path / "default"
    assert _prebuilt({"units": 7}) is None  # not a prebuilt variant: trained where a trainer exists
    with pytest.raises(FileNotFoundError, match=r"hop256-32k/bundle.json.*python -m tests.conftest"):
        _prebuilt(TINY_VARIANTS["hop256-32k"])
