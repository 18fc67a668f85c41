"""Helpers of the OpenAI-style surface's tests: the SDK against a gateway, accounts and
balances, images and frames."""

from __future__ import annotations

import io

import httpx
import numpy as np
import openai
from PIL import Image

from support import GatewayProcess, create_key_with_cli


def sdk(server: GatewayProcess, *, api_key: str | None = None) -> openai.OpenAI:
    # No SDK retries: each assertion sees the gateway's first answer.
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=api_key or server.api_key, max_retries=0
    )


def new_account_key(server: GatewayProcess, *, credits: int = 200, title: str = "other") -> str:
    return create_key_with_cli(server.env, title=title, credits=credits)


def balance(server: GatewayProcess, *, api_key: str | None = None) -> int:
    answer = httpx.get(
        f"{server.base_url}/api/v1/account/balances",
        headers={"Authorization": f"Bearer {api_key or server.api_key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    credits: int = answer.json()["data"]["credits"]
    return credits


def red_png(size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (220, 20, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_files(server: GatewayProcess) -> set[str]:
    return {path.name for path in (server.data_dir / "files").iterdir()}


def mean_rgb(frame: object) -> tuple[float, float, float]:
    """The mean colour of a frame's centre (a numpy array of rgb24 pixels)."""
    pixels = np.asarray(frame)
    height, width = pixels.shape[:2]
    centre = pixels[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3]
    red, green, blue = centre.reshape(-1, 3).mean(0)
    return float(red), float(green), float(blue)
