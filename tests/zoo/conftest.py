"""Fixtures for the zoo tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The zoo tests use tiny tensors: extra intra-op threads only spin against each other on a
    shared 2-core machine (measured: 10-50x slower), so each test runs on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
