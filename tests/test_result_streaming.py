"""A 1 GiB upstream result is stored without holding it in memory.

The server and the storing worker are separate processes (bench/result_streaming.py, which also
prints the figure as a benchmark): the worker's peak RSS may grow by less than 64 MiB while a
1 GiB body streams from loopback into a LocalFileStore.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SIZE = 1024 * 1024 * 1024
GROWTH_LIMIT_MIB = 64


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "result_streaming.py"
    spec = importlib.util.spec_from_file_location("result_streaming", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_1_gib_result_streams_into_the_store_in_little_memory(tmp_path: Path) -> None:
    bench = _bench()
    server, url = bench.start_server(SIZE)
    try:
        figures = bench.run_store(url, tmp_path, max_bytes=2 * SIZE, timeout_s=120)
    finally:
        server.kill()
        server.wait()
    stored = Path(figures["stored_path"])
    try:
        assert stored.stat().st_size == SIZE
        with stored.open("rb") as file:
            assert file.read(8)[4:8] == b"ftyp"
        # Nothing left behind: no temporary download, no partial file.
        assert list((tmp_path / "work").iterdir()) == []
        assert [p.name for p in stored.parent.iterdir()] == [stored.name]
    finally:
        stored.unlink(missing_ok=True)

    figure = bench.describe(figures)
    print(figure)
    assert figures["growth_mib"] < GROWTH_LIMIT_MIB, f"{figure} (limit {GROWTH_LIMIT_MIB} MiB)"
