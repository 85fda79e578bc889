"""Shared fixtures: tiny feature tasks made in the tests, candidate sources, a shared sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CONCAT, write_tiny_task


@pytest.fixture(scope="session", autouse=True)
def autofusion_home(tmp_path_factory: pytest.TempPathFactory):
    """Built-in tasks and the LLM cache go to a temporary home, never to ~/.cache."""
    import os

    home = tmp_path_factory.mktemp("autofusion-home")
    old = os.environ.get("AUTOFUSION_HOME")
    os.environ["AUTOFUSION_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("AUTOFUSION_HOME", None)
    else:
        os.environ["AUTOFUSION_HOME"] = old


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_task(tmp_path_factory.mktemp("tasks") / "tiny")


@pytest.fixture(scope="session")
def shared_sandbox(tiny_task: Path):
    from autofusion.sandbox.pool import Sandbox

    box = Sandbox(tiny_task)
    yield box
    box.close()


@pytest.fixture(scope="session")
def evaluator(tiny_task: Path, shared_sandbox):
    from autofusion.evaluation import ProxyEvaluator

    return ProxyEvaluator(tiny_task, sandbox=shared_sandbox)


@pytest.fixture
def concat_source() -> str:
    return CONCAT
