"""The sandbox's own housekeeping: nothing of a closed sandbox is left on disk."""

from __future__ import annotations

import os
from pathlib import Path

from autofusion.sandbox.pool import Sandbox


def test_closing_a_sandbox_removes_its_home(tiny_task: Path) -> None:
    box = Sandbox(tiny_task)
    home = box._home
    assert os.path.isdir(home)
    box.close()
    assert not os.path.exists(home)  # torch writes caches there; hundreds piled up in /tmp before
    box.close()  # idempotent
