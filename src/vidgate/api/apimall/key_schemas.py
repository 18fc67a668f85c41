"""Wire bodies of /api/v1/keys: a key, its role and its controls (keys/service.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from vidgate.api.apimall.webhook_schemas import MAX_ID
from vidgate.api.text_patterns import NOT_BLANK
from vidgate.db.models import ApiKey
from vidgate.db.types import iso_ms
from vidgate.errors import InvalidRequest
from vidgate.keys import service as keys
from vidgate.keys.budget import BudgetPeriod, period_end

# Well inside a BIGINT, so no budget can overflow the spend column.
MAX_BUDGET = 10**15
MAX_MODELS = 100

# A key id in a path: past MAX_ID it is a 400, not an integer overflow in the database.
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
Role = Literal["user", "admin"]
Period = Literal["day", "month", "total"]
ModelList = list[str] | None
# Stated in the schema, so a client (or a fuzzer) knows the two expiry fields exclude each other.
# (Both null is fine: it sets no expiry, or clears it.)
BOTH_EXPIRIES: dict[str, JsonValue] = {
    "required": ["expires_in", "expires_at"],
    "properties": {"expires_in": {"type": "string"}, "expires_at": {"type": "string"}},
}
ONE_EXPIRY = ConfigDict(json_schema_extra={"not": BOTH_EXPIRIES})


def _models_field() -> ModelList:
    return Field(
        default=None,
        max_length=MAX_MODELS,
        description="The models this key may create tasks on; null: every model",
        examples=[["sample", "sora2"]],
    )


def _not_a_boolean(value: object) -> object:
    # pydantic reads true as 1 in lax mode; a budget of `true` credits is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError("must be a number of credits, not true or false")
    return value


Credits = Annotated[int, BeforeValidator(_not_a_boolean)]


def _budget_field() -> int | None:
    return Field(
        default=None,
        ge=0,
        le=MAX_BUDGET,
        description="Credits this key may spend per budget_period; null: no cap but the balance",
    )


def _period_field() -> Period | None:
    return Field(default=None, description="UTC calendar day or month, or total (the default)")


def _expires_in_field() -> str | None:
    return Field(
        default=None,
        max_length=20,
        description="Refuse the key after this long: 30d, 12h, 90m, 2w",
        examples=["30d"],
    )


def _expires_at_field() -> AwareDatetime | None:
    return Field(default=None, description="Refuse the key from this instant (with a zone)")


class CreateKeyRequest(BaseModel):
    model_config = ONE_EXPIRY
    # Not blank, as keys.create_key checks after stripping: stated, not validated, so the
    # refusal keeps its message.
    title: str = Field(min_length=1, max_length=200, json_schema_extra={"pattern": NOT_BLANK})
    role: Role = Field(default="user", description="admin: only an admin key may make one")
    budget: Credits | None = _budget_field()
    budget_period: Period | None = _period_field()
    models: ModelList = _models_field()
    expires_in: str | None = _expires_in_field()
    expires_at: AwareDatetime | None = _expires_at_field()

    def controls(self, *, now: datetime) -> keys.KeyControls:
        return keys.KeyControls(
            role=keys.KeyRole(self.role),
            expires_at=_expiry(self.expires_in, self.expires_at, now=now),
            allowed_models=None if self.models is None else keys.split_models(self.models),
            budget_credits=self.budget,
            budget_period=None if self.budget_period is None else BudgetPeriod(self.budget_period),
        )


class UpdateKeyRequest(BaseModel):
    """Only the fields given change; null clears a control."""

    model_config = ONE_EXPIRY

    role: Role | None = Field(default=None, description="admin: only an admin key may set it")
    budget: Credits | None = _budget_field()
    budget_period: Period | None = _period_field()
    models: ModelList = _models_field()
    expires_in: str | None = _expires_in_field()
    expires_at: AwareDatetime | None = _expires_at_field()

    def apply_to(self, current: keys.KeyControls, *, now: datetime) -> keys.KeyControls:
        given = self.model_fields_set
        controls = current
        if "role" in given and self.role is not None:
            controls = replace(controls, role=keys.KeyRole(self.role))
        if "budget" in given or "budget_period" in given:
            credits = self.budget if "budget" in given else current.budget_credits
            if "budget_period" in given:
                period = None if self.budget_period is None else BudgetPeriod(self.budget_period)
            else:  # a new amount keeps the period; no budget, no period
                period = current.budget_period if credits is not None else None
            controls = replace(controls, budget_credits=credits, budget_period=period)
        if "models" in given:
            models = None if self.models is None else keys.split_models(self.models)
            controls = replace(controls, allowed_models=models)
        if "expires_in" in given or "expires_at" in given:
            expiry = _expiry(self.expires_in, self.expires_at, now=now)
            controls = replace(controls, expires_at=expiry)
        return controls


def _expiry(
    expires_in: str | None, expires_at: datetime | None, *, now: datetime
) -> datetime | None:
    if expires_in is not None and expires_at is not None:
        raise InvalidRequest("expires_in: give expires_in or expires_at, not both")
    if expires_in is not None:
        return now + keys.parse_duration(expires_in)
    return expires_at


class KeyControlsView(BaseModel):
    role: Role
    models: list[str] | None = Field(description="null: every model")
    budget: int | None = Field(description="credits per budget_period; null: no budget")
    budget_period: Period | None
    budget_spent: int | None = Field(description="spent in the current period")
    budget_resets_at: str | None = Field(description="when the current period ends (UTC)")
    expires_at: str | None


class CreatedKey(KeyControlsView):
    id: int
    title: str
    status: str
    created_at: str
    api_key: str = Field(description="The plaintext key; shown only in this response")


class KeyInfo(KeyControlsView):
    id: int
    title: str
    status: str
    created_at: str
    last_used_at: str | None
    key_preview: str


def controls_view(key: ApiKey, *, spent: int | None, now: datetime) -> dict[str, object]:
    period = None if key.budget_credits is None else BudgetPeriod(key.budget_period or "total")
    return {
        "role": key.role,
        "models": key.allowed_models,
        "budget": key.budget_credits,
        "budget_period": None if period is None else period.value,
        "budget_spent": None if period is None else (spent or 0),
        "budget_resets_at": None if period is None else iso_ms(period_end(period, now)),
        "expires_at": iso_ms(key.expires_at),
    }
