"""The surface-free command a presenter makes of a create request (API Mall or OpenAI style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vidgate.tasks import idempotency


@dataclass(frozen=True, kw_only=True)
class CreateTask:
    surface: str  # which wire format asked: "apimall", "openai"
    model: str
    type: str = "text-to-video"
    prompt: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # as given; the catalogue validates
    image_urls: tuple[str, ...] = ()
    video_url: str | None = None
    callback_url: str | None = None
    # Input images already in our FileStore (an upload to the OpenAI surface): the worker reads
    # them from the store, never over HTTP. Their keys name their content, so a retried upload
    # is the same request.
    input_file_keys: tuple[str, ...] = ()
    remixed_from: str | None = None  # the task this one remixes (OpenAI surface)

    def fingerprint(self) -> str:
        """What an Idempotency-Key is bound to: the request's meaning, not its wire spelling
        (a flat body and the same fields inside `input` are one request)."""
        meaning: dict[str, Any] = {
            "surface": self.surface,
            "model": self.model,
            "type": self.type,
            "prompt": self.prompt,
            "options": self.options,
            "image_urls": list(self.image_urls),
            "video_url": self.video_url,
            "callback_url": self.callback_url,
        }
        # Only when set, so the fingerprints of keys stored before these fields keep matching.
        if self.input_file_keys:
            meaning["input_file_keys"] = list(self.input_file_keys)
        if self.remixed_from is not None:
            meaning["remixed_from"] = self.remixed_from
        return idempotency.fingerprint(meaning)
