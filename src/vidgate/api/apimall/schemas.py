"""Request and response shapes of the video task endpoints (API-CONTRACT.md section 2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

TaskType = Literal["text-to-video", "image-to-video", "video-to-video"]
MAX_PROMPT_CHARS = 5000
MAX_IMAGES = 8
MAX_URL_CHARS = 2048


def _check_http_url(url: str) -> str:
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"URL is too long ({MAX_URL_CHARS} characters at most)")
    return url


# The schema states the shape, so clients (and fuzzers) built from the document send URLs the
# gateway takes: http(s), a host name (the last label not all digits: IP literals and numeric
# spellings are allowed or refused by the operator's address policy, which no schema can
# state), an optional port, no credentials, printable ASCII only.
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*"
    r"(:[1-9][0-9]{0,3})?([/?#][!-~]*)?$"
)
HttpUrl = Annotated[
    str,
    AfterValidator(_check_http_url),
    WithJsonSchema({"type": "string", "pattern": URL_PATTERN, "maxLength": MAX_URL_CHARS}),
]


class GenerateRequest(BaseModel):
    """POST /api/v1/videos/generate: flat, or `{"model", "callBackUrl", "input": {...}}`.

    The fields below are the request's own; every other field is a model option, checked
    against the model's catalogue entry (`given_options`), so a model added in a catalogue file
    takes its options without a code change.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str = Field(min_length=1, max_length=64, examples=["sora2"])
    type: TaskType = "text-to-video"
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    image_urls: list[HttpUrl] | None = Field(default=None, max_length=MAX_IMAGES)
    input_image: HttpUrl | None = None
    image_url: HttpUrl | None = None
    video_url: HttpUrl | None = None
    audio_url: HttpUrl | None = None
    end_image_url: HttpUrl | None = None
    callback_url: HttpUrl | None = Field(default=None, alias="callBackUrl")

    @model_validator(mode="before")
    @classmethod
    def _flatten_input(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "input" not in data:
            return data
        if not isinstance(data["input"], dict):
            raise ValueError("input must be an object of request fields")
        merged = {k: v for k, v in data.items() if k != "input"}
        for key, value in data["input"].items():
            if key in merged and merged[key] != value:
                raise ValueError(f"{key} is given both at the top level and in input")
            merged[key] = value
        return merged

    def all_image_urls(self) -> list[str]:
        urls = list(self.image_urls or [])
        urls += [u for u in (self.input_image, self.image_url) if u and u not in urls]
        return urls

    def given_options(self) -> dict[str, Any]:
        """The model options of the request (every field that is not the request's own), as
        the client sent them; null means not given."""
        return {
            name: value for name, value in (self.model_extra or {}).items() if value is not None
        }


class CreatedTask(BaseModel):
    task_id: str = Field(examples=["vid_01HQ9MA3M6V6HC6S5R9V7N4Q4D"])
    request_id: str = Field(
        description="Provider-side request identifier for tracing",
        examples=["provider_req_01HQ9MAGWQJZ0RZN6G40YRMN6E"],
    )
    credits_used: int
    remaining_credits: int
    model: str


class TaskOutput(BaseModel):
    resultUrls: list[str]


class TaskView(BaseModel):
    task_id: str
    model: str
    type: str
    status: Literal["pending", "processing", "completed", "failed", "unknown"]
    progress: int = Field(ge=0, le=100)
    output: TaskOutput
    video_url: str | None
    error_code: str | None = Field(
        description="Why it failed (ours): provider_rejected, generation_failed, timeout, "
        "cancelled, ...; null unless failed"
    )
    error_message: str | None
    failMsg: str | None = Field(description="Alias of error_message")
    credits_used: int
    credits_refunded: int
    created_at: str
    updated_at: str
    completed_at: str | None


class HistoryItem(BaseModel):
    task_id: str
    model: str
    created_at: str
    status: Literal["pending", "processing", "completed", "failed", "unknown"]
    video_url: str | None
    error_code: str | None
    credits_used: int
    credits_refunded: int
    completed_at: str | None


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    page: int
    limit: int
    total: int


class TaskEventView(BaseModel):
    """The `data` of one event of GET /api/v1/videos/{task_id}/events (its `id` and `event`
    are the stream's own fields)."""

    status: Literal["pending", "processing", "completed", "failed", "unknown"] = Field(
        description="The task's status after this event, as the status endpoint spells it "
        "(a cancelled task reads failed)"
    )
    data: dict[str, Any] = Field(
        description="What the event says: progress (progress), error_code and error_message "
        "(failed), refunded (cancelled)"
    )
    created_at: str
    task: TaskView | None = Field(
        description="On the terminal event only: the task as GET /api/v1/videos/{task_id} shows it"
    )
