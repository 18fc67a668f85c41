"""A model added only in a catalogue file, end to end against real `vidgate serve` processes:
its options are accepted flat and inside `input`, refused with messages naming the field,
listed with their types by GET /api/v1/models, typed in the OpenAPI document closely enough
that every fuzzed body is accepted; and a broken catalogue file stops serve and worker with
one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from support import GatewayProcess, decode_mp4, free_port, wait_for_task
from vidgate.providers.catalogue import BUILTIN_CATALOGUE

pytestmark = pytest.mark.e2e

CATALOGUE = """
[models.seeded]
description = "Only in this file: a seed and a negative prompt, rendered by the sample provider"
types = ["text-to-video"]
time_limit_seconds = 120
default_resolution = "240p"
options.seed = { type = "integer", min = 0, max = 4294967295 }
options.negative_prompt = { type = "string", max_length = 200 }
options.duration = { values = ["1", "2"], default = "1" }
price = { base = 2 }
channels = [{ provider = "sample" }]
"""
GENERATE = "/api/v1/videos/generate"


def write_catalogue(directory: Path, text: str = CATALOGUE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "models.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("catalogue_e2e")
    env = {"VIDGATE_CATALOGUE_PATH": str(write_catalogue(root))}
    gateway = GatewayProcess(root / "gateway", env=env).start()
    yield gateway
    gateway.stop()


def post(server: GatewayProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.base_url}{GENERATE}", json=body, headers=server.headers, timeout=10)


def test_options_flat_and_in_input_render_a_video(server: GatewayProcess, tmp_path: Path) -> None:
    flat = post(
        server, {"model": "seeded", "prompt": "a fox", "seed": 42, "negative_prompt": "blur"}
    )
    wrapped = post(
        server,
        {
            "model": "seeded",
            "input": {"prompt": "a hare", "seed": "7", "negative_prompt": "", "duration": 2},
        },
    )
    for response, seconds in ((flat, 1), (wrapped, 2)):
        assert response.status_code == 200, response.text
        created = response.json()["data"]
        assert created["credits_used"] == 2
        task = wait_for_task(server, created["task_id"])
        assert task["status"] == "completed", task
        path = tmp_path / f"{created['task_id']}.mp4"
        path.write_bytes(httpx.get(task["video_url"], timeout=30).content)
        video = decode_mp4(path)
        assert (video["codec"], video["width"], video["height"]) == ("h264", 426, 240)
        assert video["duration_s"] == pytest.approx(seconds, abs=0.1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seed": -1}, "seed: must be an integer from 0 to 4294967295 (got -1)"),
        ({"seed": "x"}, 'seed: must be an integer from 0 to 4294967295 (got "x")'),
        ({"negative_prompt": "x" * 300}, "negative_prompt: at most 200 characters (got 300)"),
        (
            {"colour": "red"},
            "colour: not an option of model seeded (allowed: duration, negative_prompt, seed)",
        ),
        ({"input": {"seed": 2**32}}, "seed: must be an integer from 0 to 4294967295 (got"),
    ],
)
def test_bad_options_are_400s_naming_the_field(
    server: GatewayProcess, fields: dict[str, Any], message: str
) -> None:
    response = post(server, {"model": "seeded", "prompt": "p", **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(message), error["message"]


def test_models_list_the_option_types_and_bounds(server: GatewayProcess) -> None:
    response = httpx.get(f"{server.base_url}/api/v1/models", timeout=10)
    assert response.status_code == 200
    (model,) = response.json()["data"]
    assert model["id"] == "seeded"
    assert model["options"] == {
        "seed": {"type": "integer", "min": 0, "max": 4294967295, "default": None},
        "negative_prompt": {"type": "string", "max_length": 200, "default": None},
        "duration": {"type": "string", "values": ["1", "2"], "default": "1"},
    }
    assert model["queue"] == "default"
    assert model["providers"] == ["sample"]
    assert model["price"]["default_credits"] == 2


def test_openapi_types_the_create_body_from_the_catalogue(server: GatewayProcess) -> None:
    document = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    body = document["paths"][GENERATE]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/GenerateRequest"}
    assert schemas["GenerateRequest"]["discriminator"]["mapping"] == {
        "seeded": "#/components/schemas/GenerateRequest.seeded"
    }
    flat = schemas["GenerateRequest.seeded.flat"]["properties"]
    assert flat["seed"] == {"type": "integer", "minimum": 0, "maximum": 4294967295}
    assert flat["negative_prompt"] == {"type": "string", "maxLength": 200}
    assert flat["duration"] == {"type": "string", "enum": ["1", "2"], "default": "1"}
    assert flat["model"] == {"type": "string", "const": "seeded"}
    wrapped = schemas["GenerateRequest.seeded.input"]["properties"]
    assert wrapped["input"]["properties"]["seed"] == flat["seed"]
    assert "callBackUrl" in wrapped


# -- fuzzing the create path --------------------------------------------------------------


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The built-in models and the seeded one; no worker (nothing renders) and limits out of
    the way of many creates."""
    root = tmp_path_factory.mktemp("catalogue_fuzz")
    text = BUILTIN_CATALOGUE.read_text() + CATALOGUE
    env = {
        "VIDGATE_CATALOGUE_PATH": str(write_catalogue(root, text)),
        "VIDGATE_RATE_LIMIT_PER_SECOND": "100000",
        "VIDGATE_RATE_LIMIT_BURST": "100000",
        "VIDGATE_MAX_CONCURRENT_JOBS": "100000",
        "VIDGATE_INITIAL_CREDITS": "1000000000",
        # Every address allowed: which hosts may be fetched is the operator's policy, not the
        # schema's (a generated localhost URL is valid input to a gateway that allows it).
        "VIDGATE_FETCH_ALLOWED_PRIVATE_NETWORKS": "0.0.0.0/0,::/0",
    }
    gateway = GatewayProcess(root / "gateway", env=env, serve_args=("--no-worker",)).start()
    yield gateway
    gateway.stop()


def test_every_body_generated_from_the_schema_is_accepted(idle_server: GatewayProcess) -> None:
    document = httpx.get(f"{idle_server.base_url}/openapi.json", timeout=10).json()
    operation = schemathesis.openapi.from_dict(document)[GENERATE]["POST"]
    seen: set[tuple[str, str]] = set()

    @settings(
        max_examples=120,  # enough to reach each of the seven models
        deadline=None,
        derandomize=True,  # the same bodies every run, so a failure reproduces
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def accepted(case: Any) -> None:
        response = post(idle_server, case.body)
        assert response.status_code == 200, (case.body, response.text)
        seen.add((case.body["model"], "input" if "input" in case.body else "flat"))

    accepted()
    assert {shape for _model, shape in seen} == {"flat", "input"}
    assert {model for model, _shape in seen} == {
        "seeded",
        "sample",
        "sora2",
        "sora2-stable",
        "sora2-pro",
        "sora-2",
        "sora-2-pro",
    }


# -- a broken catalogue stops the processes -----------------------------------------------

BROKEN = {
    "syntax": ('[models.wan\nchannels = [{ provider = "sample" }]\n', "line 1, column 12"),
    "bound": (
        '[models.wan]\nchannels = [{ provider = "sample" }]\n'
        'options.seed = { type = "integer", max = "x" }\n',
        "models.wan.options.seed.max",
    ),
    "option_key": (
        '[models.wan]\nchannels = [{ provider = "sample" }]\n'
        'options.seed = { type = "integer", maximum = 3 }\n',
        "models.wan.options.seed.maximum",
    ),
    "no_channels": ('[models.wan]\ntypes = ["text-to-video"]\n', "models.wan.channels"),
    "option_type": (
        '[models.wan]\nchannels = [{ provider = "sample" }]\noptions.seed = { type = "int" }\n',
        "models.wan.options.seed.type",
    ),
    "price": (
        '[models.wan]\nchannels = [{ provider = "sample" }]\n'
        'price = { by_option = { n_frames = { "10" = 30 } } }\n',
        "models.wan.price.by_option.n_frames",
    ),
    "queues": (
        '[models.wan]\nchannels = [{ provider = "a", queue = "gpu" }, { provider = "sample" }]\n',
        "models.wan.channels[1].queue",
    ),
}


def run_cli(command: str, catalogue: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGATE_")}
    env |= {"VIDGATE_DATA_DIR": str(data_dir), "VIDGATE_CATALOGUE_PATH": str(catalogue)}
    args = [command, "--port", str(free_port())] if command == "serve" else [command]
    return subprocess.run(
        [sys.executable, "-m", "vidgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("command", "kind"),
    [("serve", kind) for kind in BROKEN] + [("worker", "bound"), ("worker", "syntax")],
)
def test_a_broken_catalogue_stops_serve_and_worker_with_one_line(
    tmp_path: Path, command: str, kind: str
) -> None:
    text, field = BROKEN[kind]
    catalogue = tmp_path / f"broken-{kind}.toml"
    catalogue.write_text(text)
    done = run_cli(command, catalogue, tmp_path / "data")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert catalogue.name in lines[0]
    assert field in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert "sk-" not in done.stdout  # stopped before making the first key


def test_a_missing_catalogue_file_is_one_line(tmp_path: Path) -> None:
    done = run_cli("serve", tmp_path / "nowhere.toml", tmp_path / "data")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: catalogue {tmp_path / 'nowhere.toml'}: cannot read the file: "
        "No such file or directory"
    ]
