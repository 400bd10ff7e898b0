"""Fixtures for the embedded AWS: a patched moto server (endpoint URL) and patched in-process moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from toolkit.local.server import EmbeddedAws, embedded_aws, patched_mock_aws


@pytest.fixture
def aws_server() -> Iterator[EmbeddedAws]:
    with embedded_aws() as aws:
        yield aws


@pytest.fixture
def patched_moto() -> Iterator[None]:
    with patched_mock_aws():
        yield
