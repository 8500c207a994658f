"""Atomic writes and checkpoint hashes (batcher/run/atomic_files.py)."""

from __future__ import annotations

import sys

import pytest

from batcher.errors import BatcherError
from batcher.run.atomic_files import default_algorithm, new_hash


def test_new_checkpoints_use_the_fastest_installed_hash() -> None:
    pytest.importorskip("xxhash")
    assert default_algorithm() == "xxh3_128"


def test_hash_whose_package_is_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "blake3", None)  # import blake3 now raises ImportError
    with pytest.raises(BatcherError, match="pip install blake3"):
        new_hash("blake3")
    with pytest.raises(BatcherError, match="unknown checkpoint hash 'md5'"):
        new_hash("md5")
