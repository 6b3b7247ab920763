"""`python -m console` (or `tally-console`): serve the console on 127.0.0.1:8085 until SIGTERM.

`python -m console setup [NAME]` makes operator NAME's password (default `operator`) and the
session key under `.local/console/` when absent, and prints where the password is.
"""

from __future__ import annotations

import signal
import sys

import uvicorn

from console.app import build
from console.operators import DEFAULT_OPERATOR, ensure_operator, session_key
from console.settings import ConsoleSettings
from tally_messaging.logs import configure_logging


def setup(settings: ConsoleSettings, name: str) -> None:
    path = ensure_operator(settings.folder(), name)
    session_key(settings.folder())
    print(f"console operator {name!r}: password in {path}")


def main() -> None:
    settings = ConsoleSettings()
    args = sys.argv[1:]
    if args[:1] == ["setup"]:
        setup(settings, args[1] if len(args) > 1 else DEFAULT_OPERATOR)
        return
    configure_logging("console", settings.log_level, settings.log_json)
    ensure_operator(settings.folder())
    # uvicorn shuts down on SIGTERM, restores the handlers it found, then raises the signal
    # again: with a do-nothing handler here the process ends normally (exit 0), like the services.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    uvicorn.run(
        build(settings),
        host=settings.console_host,
        port=settings.console_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
