"""Who a Kafka client authenticates as: settings turned into aiokafka / FastStream options.

The one place that knows the mechanism (SASL/SCRAM-SHA-512 over SASL_PLAINTEXT on the
loopback listener); without credentials clients connect with PLAINTEXT, as before the
broker had identities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faststream.security import SASLScram512

from tally_messaging.settings import ServiceSettings

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaCredentials:
    username: str
    password: str = field(repr=False)


def kafka_credentials(settings: ServiceSettings, principal: str) -> KafkaCredentials | None:
    """The credentials `settings` give a process that acts as `principal`: the explicit
    username and password when set, else `<principal>.password` in the credentials folder
    (`kafka_credentials_dir`, or with `local_dir` the one deploy/local/kafka.sh made there
    for a broker on this machine's port) when it is there, else None: no authentication."""
    if settings.kafka_username:
        return KafkaCredentials(settings.kafka_username, settings.kafka_password.get_secret_value())
    folder = settings.kafka_credentials_dir
    if folder is None and settings.local_dir is not None:
        folder = local_credentials_dir(settings.kafka_bootstrap, settings.local_dir)
    return credentials_in(folder, principal) if folder is not None else None


def credentials_in(folder: Path, principal: str) -> KafkaCredentials | None:
    """`principal`'s password from `folder`/`<principal>.password`, if that file exists."""
    path = folder / f"{principal}.password"
    if not path.is_file():
        return None
    return KafkaCredentials(principal, path.read_text().strip())


def local_credentials_dir(bootstrap: str, local_dir: Path) -> Path | None:
    """Where deploy/local/kafka.sh, keeping its servers in `local_dir`, keeps the passwords
    of the Kafka it runs at `bootstrap` (127.0.0.1/localhost only): one broker's in
    `<local_dir>/kafka-<port>/credentials`, a cluster's (several servers, the first one's
    port names it) in `<local_dir>/kafka-cluster-<port>/credentials`, when that folder exists."""
    servers = bootstrap_servers(bootstrap)
    if not servers:
        return None
    host, _, port = servers[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return None
    name = f"kafka-{port}" if len(servers) == 1 else f"kafka-cluster-{port}"
    folder = local_dir / name / "credentials"
    return folder if folder.is_dir() else None


def bootstrap_servers(bootstrap: str) -> list[str]:
    """`host:port,host:port` as a list: FastStream takes a string as one server (it wraps it
    in a list, whose items aiokafka does not split), so a cluster's bootstrap is passed so."""
    return [server.strip() for server in bootstrap.split(",") if server.strip()]


def client_options(credentials: KafkaCredentials | None) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    if credentials is None:
        return {}
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": credentials.username,
        "sasl_plain_password": credentials.password,
    }


def broker_security(credentials: KafkaCredentials | None) -> SASLScram512 | None:
    """The `security=` of a FastStream KafkaBroker."""
    if credentials is None:
        return None
    return SASLScram512(credentials.username, credentials.password, use_ssl=False)
