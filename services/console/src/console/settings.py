"""The console's settings (pydantic-settings, prefix TALLY_), on top of the runtime's.

Kafka access goes through the runtime's settings: with identities the console is the
`ops` principal (`console_kafka_principal`), its password found like the CLI's:
TALLY_KAFKA_USERNAME/TALLY_KAFKA_PASSWORD, TALLY_KAFKA_CREDENTIALS_DIR, or the local
broker's `.local/kafka-<port>/credentials/ops.password`; without one, PLAINTEXT.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from tally_contracts.read_apis import default_read_api_url
from tally_messaging.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[4]
CONSOLE_PORT = 8085


def _local_dir() -> Path:
    return Path(os.environ.get("TALLY_LOCAL_DIR") or REPO / ".local")


class ConsoleSettings(ServiceSettings):
    local_dir: Path | None = Field(default_factory=_local_dir)
    """As the runtime's (TALLY_LOCAL_DIR), defaulting to the checkout's `.local`: the
    console finds the local broker's passwords there."""
    console_host: str = "127.0.0.1"
    console_port: int = CONSOLE_PORT
    console_dir: Path | None = None
    """Operators' passwords (`operators/<name>.password`) and the session key; default
    `$TALLY_LOCAL_DIR/console` (`.local/console`), never committed."""
    console_session_max_age: int = 8 * 3600
    console_kafka_principal: str = "ops"
    console_scan_limit: int = 200_000
    """Most records one page reads from Kafka; beyond it the page says it stopped early."""
    console_scan_seconds: float = 20.0
    """Longest time one page reads from Kafka (the same: it says it stopped early)."""
    invoicing_url: str = default_read_api_url("invoicing")
    rules_url: str = default_read_api_url("rules")
    credits_url: str = default_read_api_url("credits")
    payments_url: str = default_read_api_url("payments")

    def folder(self) -> Path:
        return self.console_dir or _local_dir() / "console"

    def service_url(self, service: str) -> str:
        urls = {
            "invoicing": self.invoicing_url,
            "rules": self.rules_url,
            "credits": self.credits_url,
            "payments": self.payments_url,
        }
        return urls[service].rstrip("/")
