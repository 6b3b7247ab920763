"""Destination groups: named sets of destination prefixes.

A destination belongs to the group owning its longest matching prefix, looked up across
all groups of the rule set. So with `{"europe": ["4"], "uk": ["44"]}` the destination
`"4420"` is in `uk` only, never in both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class DestinationGroups:
    """Which named group, if any, a destination belongs to."""

    def __init__(self, groups: Mapping[str, Iterable[str]]) -> None:
        # Sorted so that a prefix listed in two groups (validation refuses that) still
        # resolves the same way every time.
        self._owner = {prefix: name for name, prefixes in sorted(groups.items()) for prefix in prefixes}

    def group_of(self, destination: str | None) -> str | None:
        """The group owning the longest prefix of `destination`; None when no prefix matches."""
        if not destination:
            return None
        for length in range(len(destination), 0, -1):
            owner = self._owner.get(destination[:length])
            if owner is not None:
                return owner
        return None
