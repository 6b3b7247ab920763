"""Run the benchmarks named on the command line (default: all)."""

import asyncio
import sys

from bench import credits, ingest

BENCHMARKS = {"ingest": ingest.main, "credits": credits.main}


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        asyncio.run(BENCHMARKS[name]())


if __name__ == "__main__":
    main()
