"""Run the benchmarks named on the command line (default: all)."""

import asyncio
import sys

from bench import credits, dedupe, history_credits, history_invoicing, ingest, settle

BENCHMARKS = {
    "ingest": ingest.main,
    "credits": credits.main,
    "history_invoicing": history_invoicing.main,
    "history_credits": history_credits.main,
    "dedupe": dedupe.main,
    "settle": settle.main,
}


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        asyncio.run(BENCHMARKS[name]())


if __name__ == "__main__":
    main()
