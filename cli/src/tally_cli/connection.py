"""Where the CLI finds Kafka and who it is there: `ops` for commands, tails and replays,
`usage-producer` for publishing usage (the principals of deploy/local/acls.tsv)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tally_messaging.kafka_security import KafkaCredentials, client_options, kafka_credentials
from tally_messaging.settings import ServiceSettings

OPERATOR: Final = "ops"
USAGE_PRODUCER: Final = "usage-producer"
CHECKOUT_LOCAL_DIR = Path(__file__).resolve().parents[3] / ".local"
"""Where deploy/local keeps its servers when TALLY_LOCAL_DIR does not say: the CLI runs from
the checkout, and finds the local broker's passwords there."""


@dataclass(frozen=True)
class KafkaAccess:
    bootstrap: str
    credentials: KafkaCredentials | None = None
    """None: PLAINTEXT, for a broker without identities."""

    def options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client."""
        return {"bootstrap_servers": self.bootstrap, **client_options(self.credentials)}


def kafka_access(bootstrap: str | None, principal: str) -> KafkaAccess:
    """Kafka at `bootstrap` (default: the settings') as `principal`, with the password the
    settings give it (TALLY_KAFKA_USERNAME/PASSWORD, TALLY_KAFKA_CREDENTIALS_DIR, or the
    local broker's credentials folder); without one, PLAINTEXT."""
    settings = ServiceSettings() if bootstrap is None else ServiceSettings(kafka_bootstrap=bootstrap)
    if settings.local_dir is None:
        settings = settings.model_copy(update={"local_dir": CHECKOUT_LOCAL_DIR})
    return KafkaAccess(settings.kafka_bootstrap, kafka_credentials(settings, principal))
