"""`vidgate models make-tiny` as an operator runs it: a folder in diffusers' layout that the
pipeline class loads offline, and one-line refusals for what it cannot do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def make_tiny(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # nothing may come from a hub
    return subprocess.run(
        [sys.executable, "-m", "vidgate", "models", "make-tiny", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_make_tiny_writes_a_pipeline_folder_that_loads(tmp_path: Path) -> None:
    from diffusers import LTXPipeline

    out = tmp_path / "ltx"
    made = make_tiny("--pipeline", "ltx-t2v", "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert f"wrote a tiny ltx-t2v pipeline to {out}" in made.stdout
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "LTXPipeline"
    assert {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    pipeline = LTXPipeline.from_pretrained(str(out), local_files_only=True)
    assert sum(p.numel() for p in pipeline.transformer.parameters()) < 1_000_000

    again = make_tiny("--pipeline", "ltx-t2v", "--out", str(out))
    assert again.returncode == 1
    assert "exists and is not empty" in again.stderr


def test_an_unknown_pipeline_is_refused(tmp_path: Path) -> None:
    refused = make_tiny("--pipeline", "sora", "--out", str(tmp_path / "x"))
    assert refused.returncode == 1
    assert "unknown pipeline 'sora' (known: wan-t2v, wan-i2v, ltx-t2v, ltx-i2v)" in refused.stderr
    assert not (tmp_path / "x").exists()
