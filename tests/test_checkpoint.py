"""Atomic writes of checkpoints and JSON files."""
from __future__ import annotations

import os
import stat

from pinn.checkpoint import write_json


def test_atomic_writes_honour_the_umask(tmp_path):
    """metrics.json and checkpoints get the mode open() would give them, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "m.json")
        assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
        os.umask(0o077)
        write_json({"a": 1}, tmp_path / "private.json")
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)
