"""Service settings from the environment (pydantic-settings), prefix TALLY_."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/{service}"
    """`{service}` is replaced by the service name: one database per service."""
    http_host: str = "127.0.0.1"
    http_port: int = 0
    """0 picks the service's default port (see `DEFAULT_PORTS`)."""
    topic_prefix: str = ""
    """Prepended to every topic name; lets test runs share one broker without crosstalk."""
    group_prefix: str = ""
    """Prepended to every consumer group id."""
    batch_max_records: int = 2000
    relay_batch_size: int = 1000
    pool_max_size: int = 10
    startup_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long start-up waits for PostgreSQL and Kafka (retrying with backoff, `/health`
    answering 503 meanwhile) before the process gives up and exits 1. The default covers a
    database restart or a broker election with room to spare."""
    log_level: str = "INFO"
    log_json: bool | None = None
    """None: JSON unless stdout is a terminal."""

    def dsn(self, service: str) -> str:
        return self.database_url.replace("{service}", service)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


DEFAULT_PORTS = {"invoicing": 8081, "rules": 8082, "credits": 8083, "payments": 8084}
