"""Run the benchmarks named on the command line (default: all)."""

import asyncio
import sys

from bench import ingest

BENCHMARKS = {"ingest": ingest.main}


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        asyncio.run(BENCHMARKS[name]())


if __name__ == "__main__":
    main()
