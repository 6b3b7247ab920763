"""Service settings from the environment (pydantic-settings), prefix TALLY_."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    """With a username, clients authenticate with SASL/SCRAM-SHA-512 as that principal."""
    kafka_credentials_dir: Path | None = None
    """A folder of `<principal>.password` files (deploy/local/kafka.sh makes one): each
    process authenticates as its own principal (a service as its name, the CLI as `ops` or
    `usage-producer`) when its file is there. `kafka_username` wins over it; with neither,
    clients connect without authentication (PLAINTEXT)."""
    local_dir: Path | None = None
    """TALLY_LOCAL_DIR: the folder deploy/local's scripts keep their servers in. With it, and
    no `kafka_credentials_dir`, a Kafka on this machine finds its passwords where
    `kafka_security.local_credentials_dir` says (`<local_dir>/kafka-<port>/credentials`, a
    cluster's in `kafka-cluster-<first port>`; the CLI and the console default it to the
    checkout's `.local`)."""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/{service}"
    """`{service}` is replaced by the service name: one database per service."""
    http_host: str = "127.0.0.1"
    http_port: int = 0
    """0 picks the service's own default (`Service(default_http_port=...)`)."""
    topic_prefix: str = ""
    """Prepended to every topic name; lets test runs share one broker without crosstalk."""
    group_prefix: str = ""
    """Prepended to every consumer group id."""
    batch_max_records: int = 2000
    consumer_wait_ms: int = Field(default=10, ge=1)
    """How long a consumer's poll waits for records. FastStream sleeps as long again after a
    poll that found none (its batch subscriber's loop), so a record that arrives meanwhile
    waits up to twice this; it was 100 ms."""
    relay_batch_size: int = 1000
    pool_max_size: int = 10
    startup_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long start-up waits for PostgreSQL and Kafka (retrying with backoff, `/health`
    answering 503 meanwhile) before the process gives up and exits 1. The default covers a
    database restart or a broker election with room to spare."""
    dedupe_window_days: int = Field(default=70, ge=1)
    """How long re-sent message ids are recognised (`tally_message_ids`, one partition per
    day): the longest billing period (31 days), plus late usage through the next period
    (31), plus 8 days of outage backlog. A message older than this is dead-lettered."""
    log_level: str = "INFO"
    log_json: bool | None = None
    """None: JSON unless stdout is a terminal."""

    def dsn(self, service: str) -> str:
        return self.database_url.replace("{service}", service)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
