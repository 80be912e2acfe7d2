"""Fixtures shared by the app's test modules."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def sdk_runner() -> Iterator[asyncio.Runner]:
    """One event loop for every test that drives the SDK's durable client, as in a worker process: the SDK keeps
    one HTTP session per process, bound to the loop that opened it, which a later loop could not use."""
    with asyncio.Runner() as runner:
        yield runner
