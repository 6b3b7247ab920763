"""A stand-in service for the restart tests: `python -m tests.faults.flaky_service`.

It exits with 1 (as a service started while its database is down did) until it has been
started `FLAKY_FAILURES` times, counted in the file `FLAKY_COUNTER`; then it answers
`GET /health` with 200 on `TALLY_HTTP_PORT`."""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


def main() -> int:
    counter = Path(os.environ["FLAKY_COUNTER"])
    starts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(starts))
    if starts <= int(os.environ.get("FLAKY_FAILURES", "0")):
        print(f"start {starts}: ConnectionRefusedError (the database is down)", flush=True)
        return 1
    HTTPServer(("127.0.0.1", int(os.environ["TALLY_HTTP_PORT"])), _Health).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
