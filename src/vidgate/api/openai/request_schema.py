"""The create body's JSON Schema, generated from the catalogue: one branch per model, with the
`size` and `seconds` values that model takes (a model without those options takes neither), in
both encodings the route reads (JSON, and the multipart form the openai SDK sends).

Exact enough that a body valid against it is one the gateway accepts. The multipart form's
uploaded `input_reference` image is described in words only: no schema can say that its bytes
must be a PNG, JPEG or WebP, which the gateway checks.
"""

from __future__ import annotations

from typing import Any

from vidgate.api.apimall.schemas import URL_PATTERN
from vidgate.api.openai.schemas import DEFAULT_MODEL, MAX_PROMPT_CHARS, MAX_URL_CHARS
from vidgate.api.text_patterns import NOT_BLANK
from vidgate.providers.catalogue import Catalogue, ModelSpec

JSON_COMPONENT = "CreateVideoRequest"
FORM_COMPONENT = "CreateVideoForm"
_PROMPT = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PROMPT_CHARS,
    "pattern": NOT_BLANK,
    "description": "What the video shows",
}
_IMAGE_URL = {
    "type": "string",
    "pattern": URL_PATTERN,
    "maxLength": MAX_URL_CHARS,
    "description": "A reference image to start from (http(s); a base64 data: URL works too)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _fields(model: ModelSpec) -> dict[str, Any]:
    fields: dict[str, Any] = {"prompt": _PROMPT}
    # The default model may be left out; every other model is named.
    fields["model"] = {"type": "string", "const": model.id}
    for name in ("size", "seconds"):
        spec = model.options.get(name)
        if spec is not None:
            fields[name] = spec.json_schema()
    return fields


def _branch(model: ModelSpec, *, form: bool) -> dict[str, Any]:
    fields = _fields(model)
    required = ["prompt"] if model.id == DEFAULT_MODEL else ["prompt", "model"]
    if "image-to-video" in model.types:
        reference = "input_reference[image_url]" if form else "input_reference"
        fields[reference] = (
            _IMAGE_URL
            if form
            else {
                "type": "object",
                "properties": {"image_url": _IMAGE_URL},
                "required": ["image_url"],
                "additionalProperties": False,
            }
        )
        if "text-to-video" not in model.types:
            required.append(reference)  # without an image, this model takes no request
    return {
        "title": model.id,
        "type": "object",
        "properties": fields,
        "required": required,
        "additionalProperties": False,
    }


def _usable(model: ModelSpec) -> bool:
    """A model this surface can create tasks of (it has no field for a source video)."""
    return "text-to-video" in model.types or "image-to-video" in model.types


def create_video_components(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """OpenAPI components: the JSON body and the multipart form of POST /v1/videos."""
    models = [model for model in catalogue.models.values() if _usable(model)]
    common = (
        "A video task. `model` picks the model (default sora-2); `size` and `seconds` are "
        "those of models that have them (GET /api/v1/models lists each model's options)."
    )
    return {
        JSON_COMPONENT: {
            "title": JSON_COMPONENT,
            "description": common,
            "oneOf": [_branch(model, form=False) for model in models],
        },
        FORM_COMPONENT: {
            "title": FORM_COMPONENT,
            "description": (
                f"{common} The form may also carry `input_reference`: a PNG, JPEG or WebP "
                "image file to start from."
            ),
            "oneOf": [_branch(model, form=True) for model in models],
        },
    }


def create_video_body() -> dict[str, Any]:
    """The route's requestBody, pointing at the components above."""
    return {
        "required": True,
        "content": {
            "application/json": {"schema": _ref(JSON_COMPONENT)},
            "multipart/form-data": {"schema": _ref(FORM_COMPONENT)},
        },
    }
