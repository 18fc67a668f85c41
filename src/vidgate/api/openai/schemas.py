"""Request and response shapes of /v1/videos (API-CONTRACT.md section 3), as the official
openai SDK reads and sends them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_PROMPT_CHARS = 5000
MAX_URL_CHARS = 2048
DEFAULT_MODEL = "sora-2"
VideoStatus = Literal["queued", "in_progress", "completed", "failed"]
Variant = Literal["video", "thumbnail", "spritesheet"]


class ImageReference(BaseModel):
    """`input_reference` given as an object: an image URL (http(s), or a base64 data URL)."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(default=None, min_length=1)
    # Accepted in the shape, refused with a message: vidgate has no Files API to refer to.
    file_id: str | None = None


class CreateVideoFields(BaseModel):
    """POST /v1/videos, read from a JSON body or from multipart form fields (an uploaded
    `input_reference` file is handled beside these)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str = Field(default=DEFAULT_MODEL, min_length=1, max_length=64)
    seconds: str | None = Field(default=None, examples=["4", "8", "12"])
    size: str | None = Field(default=None, examples=["720x1280", "1280x720"])
    input_reference: ImageReference | None = None

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_as_text(cls, value: object) -> object:
        # The protocol says "4"; many clients send the number 4. Either is one request.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class RemixRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


class VideoError(BaseModel):
    code: str = Field(examples=["generation_failed"])
    message: str


class Video(BaseModel):
    id: str = Field(examples=["vid_01HQ9MA3M6V6HC6S5R9V7N4Q4D"])
    object: Literal["video"] = "video"
    model: str
    status: VideoStatus
    progress: int = Field(ge=0, le=100)
    created_at: int = Field(description="Unix seconds")
    completed_at: int | None = Field(description="Unix seconds; set once it has ended")
    expires_at: int | None = Field(
        description="Unix seconds when the content goes away; null: kept until deleted"
    )
    prompt: str | None
    size: str = Field(examples=["1280x720"])
    seconds: str = Field(examples=["4"])
    remixed_from_video_id: str | None
    error: VideoError | None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedVideo(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: Literal[True] = True
