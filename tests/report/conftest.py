"""Fixtures of the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from report_fakes import make_fake_run


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_run(tmp_path_factory.mktemp("report") / "run")
