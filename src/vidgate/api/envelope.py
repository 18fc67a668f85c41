"""The API Mall response envelopes (API-CONTRACT.md section 1)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T
    request_id: str = Field(examples=["req_01HQ9M7J7X9P7Y8T6W5V4U3S2R"])


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str


class ErrorEnvelope(BaseModel):
    success: Literal[False] = False
    error: ErrorBody
    request_id: str


def error_payload(*, code: str, message: str, request_id: str) -> dict[str, object]:
    return {
        "success": False,
        "error": {"code": code, "message": message},
        "request_id": request_id,
    }


def envelope_bytes(data_json: bytes, request_id: str) -> bytes:
    """The success envelope around already rendered JSON, as `Envelope` would serialise it."""
    return b'{"success":true,"data":%s,"request_id":"%s"}' % (data_json, request_id.encode())
