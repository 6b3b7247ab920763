"""Fault-injection points for the crash tests and the fault run.

`TALLY_FAULT=<point>[:<n>]` makes the process SIGKILL itself the n-th time (default
first) it reaches `<point>`. Unset in production: `reach()` is then a dict lookup.
"""

import os
import signal

_counts: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("TALLY_FAULT")
    if not spec:
        return None
    point, _, nth = spec.partition(":")
    return point, int(nth or 1)


def reach(point: str) -> None:
    armed = _armed()
    if armed is None or armed[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
