"""moto's S3 server, one per test session, for the S3 store's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from s3_server import MotoServer


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer.start(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()
