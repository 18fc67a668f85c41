"""Run every benchmark in bench/ (`make bench`); options are passed to each.

.venv/bin/python bench/run_all.py [--quick] [--duration 5] [--concurrency 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_bench


def main(argv: list[str]) -> int:
    return gateway_bench.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
