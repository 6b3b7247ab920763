"""Tally's services, and where each one's read API listens by default (HTTP on
127.0.0.1): the service starts there unless TALLY_HTTP_PORT says otherwise, and the CLI
and the console look there unless told another URL."""

DEFAULT_READ_API_PORTS: dict[str, int] = {"invoicing": 8081, "rules": 8082, "credits": 8083, "payments": 8084}
SERVICES: tuple[str, ...] = tuple(DEFAULT_READ_API_PORTS)
"""Each service's name: its Kafka principal, database, consumer group prefix and package."""


def default_read_api_url(service: str) -> str:
    return f"http://127.0.0.1:{DEFAULT_READ_API_PORTS[service]}"


__all__ = ["DEFAULT_READ_API_PORTS", "SERVICES", "default_read_api_url"]
