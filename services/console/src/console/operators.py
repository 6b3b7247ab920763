"""Who may use the console: operators' passwords and the session key, kept under
`.local/console/` (mode 0600, never committed), made by `python -m console setup`."""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path

DEFAULT_OPERATOR = "operator"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(value + "\n")


def ensure_operator(folder: Path, name: str = DEFAULT_OPERATOR) -> Path:
    """`name`'s password file, made with a fresh random password when absent."""
    if not _NAME.match(name):
        raise ValueError(f"operator name {name!r}: lower-case letters, digits, - and _ (32 at most)")
    path = folder / "operators" / f"{name}.password"
    if not path.is_file():
        _write_secret(path, secrets.token_urlsafe(18))
    return path


def session_key(folder: Path) -> str:
    """The key that signs session cookies; made once, so a restart keeps operators logged in."""
    path = folder / "session.key"
    if not path.is_file():
        _write_secret(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def password_matches(folder: Path, name: str, password: str) -> bool:
    """Whether `password` is `name`'s; an unknown or malformed name never matches."""
    if not _NAME.match(name):
        return False
    path = folder / "operators" / f"{name}.password"
    if not path.is_file():
        hmac.compare_digest(password.encode(), b"-")  # same work for an unknown name
        return False
    return hmac.compare_digest(password.encode(), path.read_text().strip().encode())
