"""Run every benchmark in bench/ (`make bench`); options are passed to each.

.venv/bin/python bench/run_all.py [--quick] [--duration 5] [--concurrency 16] [--no-postgres]

gateway_bench.py takes them all; scale_out.py (PostgreSQL; left out with --no-postgres) takes
--quick and the load options it shares (--duration, --warmup, --concurrency, --max-requests).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_bench
import scale_out

SHARED_WITH_SCALE_OUT = ("--duration", "--warmup", "--concurrency", "--max-requests")


def scale_out_argv(argv: list[str]) -> list[str]:
    """The options of `argv` scale_out.py takes too (`--name value` or `--name=value`)."""
    picked: list[str] = []
    for index, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if arg == "--quick":
            picked.append(arg)
        elif name in SHARED_WITH_SCALE_OUT:
            picked += [arg] if "=" in arg else argv[index : index + 2]
    return picked


def main(argv: list[str]) -> int:
    status = gateway_bench.main(argv)
    if status == 0 and "--no-postgres" not in argv:
        status = scale_out.main(scale_out_argv(argv))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
