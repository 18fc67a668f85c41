"""The baseline: a bare FastAPI app on the gateway's own server stack.

Two routes with response models, no database, no auth, no middleware:
  GET  /bare/status  a small constant JSON envelope (the status-poll baseline)
  POST /bare/create  validates a small pydantic body and echoes it in an envelope (the create
                     baseline)
Served by `uvicorn.run(app, host=..., port=..., log_level="info")`, exactly the call
`vidgate serve` makes: one process, uvicorn's automatic loop and HTTP implementation (uvloop and
httptools when installed), access log on.

    python bench/bare_app.py --port 8123
"""

from __future__ import annotations

import argparse
from typing import Literal

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field


class StatusData(BaseModel):
    task_id: str
    model: str
    status: Literal["pending", "processing", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    video_url: str | None


class StatusEnvelope(BaseModel):
    success: Literal[True] = True
    data: StatusData
    request_id: str


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64)
    type: Literal["text-to-video", "image-to-video", "video-to-video"] = "text-to-video"
    prompt: str | None = Field(default=None, max_length=5000)
    aspect_ratio: str | None = None
    n_frames: str | int | None = None
    resolution: str | None = None


class CreateEnvelope(BaseModel):
    success: Literal[True] = True
    data: CreateBody
    request_id: str


STATUS = StatusEnvelope(
    data=StatusData(
        task_id="vid_01HQ9MA3M6V6HC6S5R9V7N4Q4D",
        model="sample",
        status="completed",
        progress=100,
        video_url="http://127.0.0.1/files/vid_01HQ9MA3M6V6HC6S5R9V7N4Q4D.mp4?sig=abc",
    ),
    request_id="req_01HQ9M7J7X9P7Y8T6W5V4U3S2R",
)

app = FastAPI(title="bare")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/bare/status", response_model=StatusEnvelope)
async def bare_status() -> StatusEnvelope:
    return STATUS


@app.post("/bare/create", response_model=CreateEnvelope)
async def bare_create(body: CreateBody) -> CreateEnvelope:
    return CreateEnvelope(data=body, request_id="req_01HQ9M7J7X9P7Y8T6W5V4U3S2R")


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare FastAPI baseline on the gateway's stack.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
