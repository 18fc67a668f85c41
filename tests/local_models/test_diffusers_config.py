"""The providers file's `diffusers` tables: what a local model's table may say, and the one-line
errors for what it gets wrong (checked before anything loads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgate.local_models.video import as_uint8_frames, model_frames, model_side
from vidgate.providers.config_file import ProvidersFileError, read_providers_file
from vidgate.providers.diffusers_local import DiffusersProvider


def read(tmp_path: Path, table: str) -> DiffusersProvider:
    path = tmp_path / "providers.toml"
    path.write_text(f'[providers.wan]\nkind = "diffusers"\n{table}')
    config = read_providers_file(path)["wan"]
    return DiffusersProvider.from_config(config, work_dir=tmp_path / "work")


def test_a_local_model_table_needs_no_endpoint_and_resolves_its_path(tmp_path: Path) -> None:
    provider = read(tmp_path, 'pipeline = "wan-t2v"\npath = "weights/wan"\nmax_concurrent = 1\n')
    assert provider.model.path == tmp_path / "weights" / "wan"  # next to the providers file
    assert (provider.model.device, provider.model.dtype, provider.fps) == ("cpu", "float32", 16)
    assert provider.max_concurrent == 1
    gpu = read(tmp_path, 'pipeline = "ltx-t2v"\npath = "/m"\ndevice = "cuda:1"\nfps = 30\n')
    assert (gpu.model.device, gpu.model.dtype, gpu.fps) == ("cuda:1", "bfloat16", 30)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('pipeline = "wan-t2v"\n', "providers.wan.path: missing: the folder of the pipeline's"),
        ('path = "/m"\nbase_url = "http://x"\n', "providers.wan.base_url: unknown key"),
        ('path = "/m"\npipeline = "sora"\n', "pipeline must be one of wan-t2v, wan-i2v, ltx-t2v"),
        ('path = "/m"\npipeline = "wan-t2v"\ndevice = "tpu"\n', "device must be cpu, cuda,"),
        ('path = "/m"\npipeline = "wan-t2v"\ndtype = "int8"\n', "dtype must be one of float32,"),
        ('path = "/m"\npipeline = "wan-t2v"\nfps = 0\n', "fps must be a positive integer"),
    ],
)
def test_each_mistake_is_named(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises((ProvidersFileError, ValueError)) as raised:
        read(tmp_path, table)
    assert message in str(raised.value)


def test_sizes_and_lengths_become_what_the_model_accepts() -> None:
    assert [model_side(side, 16) for side in (832, 854, 480, 5)] == [832, 848, 480, 16]
    assert model_side(854, 32) == 864
    assert model_frames(5, fps=16, multiple=4) == 81  # Wan 2.1's 81 frames
    assert model_frames(5, fps=24, multiple=8) == 121  # LTX-Video: 8k + 1
    assert model_frames(1, fps=8, multiple=8) == 9


def test_frames_are_normalised_from_floats_channels_first_and_pil() -> None:
    import numpy as np
    from PIL import Image

    floats = np.full((2, 4, 6, 3), 0.5, dtype=np.float32)
    assert as_uint8_frames(floats).shape == (2, 4, 6, 3)
    assert as_uint8_frames(floats)[0, 0, 0].tolist() == [128, 128, 128]
    channels_first = np.ones((2, 3, 4, 6), dtype=np.float32) * 2.0  # clipped to 1
    assert as_uint8_frames(channels_first)[1, 3, 5].tolist() == [255, 255, 255]
    images = [Image.new("RGB", (6, 4), (10, 20, 30))] * 3
    assert as_uint8_frames(images)[2, 0, 0].tolist() == [10, 20, 30]


def test_out_of_memory_is_told_from_other_failures() -> None:
    import torch

    from vidgate.local_models.pipelines import is_out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shapes cannot be multiplied"))


def test_the_documented_catalogue_and_providers_files_are_usable(tmp_path: Path) -> None:
    import re
    import tomllib

    from vidgate.providers.catalogue import Catalogue

    doc = (Path(__file__).parents[2] / "docs" / "local-models.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.DOTALL)
    files = {block.splitlines()[0]: block for block in blocks}
    catalogue = Catalogue.from_dict(tomllib.loads(files["# models.toml (VIDGATE_CATALOGUE_PATH)"]))
    wan = catalogue.get("wan2.1-t2v-1.3b")
    assert wan.shape(wan.normalize_options({})).width == 832
    assert catalogue.get("ltx-video-i2v").types == ("image-to-video",)
    for header in ("# providers.toml", "# providers.toml for them: one GPU each"):
        path = tmp_path / "providers.toml"
        path.write_text(files[header])
        for config in read_providers_file(path).values():
            DiffusersProvider.from_config(config, work_dir=tmp_path)
    served = {c.provider for model in catalogue.models.values() for c in model.channels}
    assert served == set(read_providers_file(path))


@pytest.mark.parametrize(
    ("pipeline", "options", "message"),
    [
        ("wan-t2v", {"num_inference_steps": 0}, "num_inference_steps: must be between 1 and"),
        ("wan-t2v", {"seed": "x"}, "seed: must be an integer (got 'x')"),
        ("ltx-t2v", {"guidance_scale": "loud"}, "guidance_scale: must be a number"),
        ("ltx-t2v", {"guidance_scale": "inf"}, "guidance_scale: must be between 0 and 30"),
        ("wan-i2v", {}, "tiny makes videos from an image: send image_urls"),
    ],
)
async def test_options_the_pipeline_cannot_take_fail_the_submit(
    tmp_path: Path, pipeline: str, options: dict[str, str | int], message: str
) -> None:
    from vidgate.providers.base import GenerationRequest, LogicalError

    provider = read(tmp_path, f'pipeline = "{pipeline}"\npath = "/nowhere"\n')
    request = GenerationRequest(
        task_id="vid_1",
        model="tiny",
        upstream_model=None,
        type="text-to-video",
        prompt="a fox",
        options=options,
        seconds=1,
        width=64,
        height=64,
    )
    with pytest.raises(LogicalError) as raised:
        await provider.submit(request)
    assert message in raised.value.message
    await provider.close()
