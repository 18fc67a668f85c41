"""A real `vidgate serve` for the OpenAI-style surface's tests, shared by a module, and the
official openai SDK pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from openai_surface.helpers import sdk
from support import GatewayProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("openai_surface") / "gateway").start()
    yield gateway
    gateway.stop()


@pytest.fixture
def client(server: GatewayProcess) -> Iterator[openai.OpenAI]:
    with sdk(server) as opened:
        yield opened
