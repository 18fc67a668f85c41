"""The create body's JSON Schema, generated from the catalogue: one schema per model with its
request types and its options (types, enums, bounds), in both wire shapes (flat, and wrapped in
`input`), chosen by `model`.

The schema is meant to be exact enough that any body valid against it is one the gateway
accepts (a fuzzer or a generated client reaches the create path), so the per-type rules the
service enforces (text-to-video needs a prompt, ...) are stated too.
"""

from __future__ import annotations

from typing import Any

from vidgate.api.apimall.schemas import GenerateRequest
from vidgate.api.text_patterns import NOT_BLANK
from vidgate.providers.catalogue import Catalogue, ModelSpec

COMPONENT = "GenerateRequest"
_OWN_FIELDS = ("model", "type", "callBackUrl")  # described per model below
# Not blank as the service reads it (str.strip()): an ECMA `\S` lets \x1c-\x1f through.
_PROMPT_NOT_BLANK = {"type": "string", "pattern": NOT_BLANK}
_PRESENT_URL = {"type": "string"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _type_rules(model: ModelSpec) -> list[dict[str, Any]]:
    """One branch per request type the model supports, with the inputs that type needs."""
    # Without `type` the request is text-to-video; a model without it needs `type` said.
    required_type = [] if "text-to-video" in model.types else ["type"]
    rules: dict[str, dict[str, Any]] = {
        "text-to-video": {
            "properties": {"type": {"const": "text-to-video"}, "prompt": _PROMPT_NOT_BLANK},
            "required": [*required_type, "prompt"],
        },
        "image-to-video": {
            "properties": {"type": {"const": "image-to-video"}},
            "required": ["type"],
            "anyOf": [
                {
                    "properties": {"image_urls": {"type": "array", "minItems": 1}},
                    "required": ["image_urls"],
                },
                {"properties": {"input_image": _PRESENT_URL}, "required": ["input_image"]},
                {"properties": {"image_url": _PRESENT_URL}, "required": ["image_url"]},
            ],
        },
        "video-to-video": {
            "properties": {"type": {"const": "video-to-video"}, "video_url": _PRESENT_URL},
            "required": ["type", "video_url"],
        },
    }
    return [rules[kind] for kind in model.types]


def _fields(model: ModelSpec, core: dict[str, Any]) -> dict[str, Any]:
    kind: dict[str, Any] = {"type": "string", "enum": list(model.types)}
    if "text-to-video" in model.types:
        kind["default"] = "text-to-video"
    options = {name: spec.json_schema() for name, spec in model.options.items()}
    return {"type": kind, **core, **options}


def _model_components(model: ModelSpec, own: dict[str, Any]) -> dict[str, dict[str, Any]]:
    name = f"{COMPONENT}.{model.id}"
    core = {field: schema for field, schema in own.items() if field not in _OWN_FIELDS}
    fields = _fields(model, core)
    rules = _type_rules(model)
    callback = {**own["callBackUrl"], "description": "URL called when the task ends"}
    model_id = {"type": "string", "const": model.id}
    flat = {
        "title": f"{model.id} (flat)",
        "type": "object",
        "properties": {"model": model_id, **fields, "callBackUrl": callback},
        "required": ["model"],
        "additionalProperties": False,
        "anyOf": rules,
    }
    wrapped = {
        "title": f"{model.id} (fields in input)",
        "type": "object",
        "properties": {
            "model": model_id,
            "callBackUrl": callback,
            "input": {
                "type": "object",
                "description": "The request's fields and options, as in the flat shape",
                "properties": fields,
                "additionalProperties": False,
                "anyOf": rules,
            },
        },
        "required": ["model", "input"],
        "additionalProperties": False,
    }
    return {
        name: {
            "title": model.id,
            "description": model.description or f"A task of model {model.id}",
            "oneOf": [_ref(f"{name}.flat"), _ref(f"{name}.input")],
        },
        f"{name}.flat": flat,
        f"{name}.input": wrapped,
    }


def generate_request_components(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """OpenAPI components: `GenerateRequest` (one of the models, chosen by `model`) and, per
    model, `GenerateRequest.<id>` with its `.flat` and `.input` shapes."""
    # The request's own fields as pydantic describes them: the same checks as the parser.
    own: dict[str, Any] = GenerateRequest.model_json_schema(by_alias=True)["properties"]
    components: dict[str, dict[str, Any]] = {}
    for model in catalogue.models.values():
        components.update(_model_components(model, own))
    ids = list(catalogue.models)
    components[COMPONENT] = {
        "title": COMPONENT,
        "description": (
            "A video task. `model` picks the model; the other fields are the request's own "
            "(prompt, images, callBackUrl) or the model's options, listed with their types in "
            "GET /api/v1/models. The fields may also be wrapped in `input`."
        ),
        "oneOf": [_ref(f"{COMPONENT}.{model_id}") for model_id in ids],
        "discriminator": {
            "propertyName": "model",
            "mapping": {
                model_id: f"#/components/schemas/{COMPONENT}.{model_id}" for model_id in ids
            },
        },
    }
    return components
