"""The four services' read APIs and /metrics, as the pages ask for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from console.settings import ConsoleSettings

SERVICES = ("invoicing", "rules", "credits", "payments")


class ReadFailed(Exception):
    """A service did not answer, or answered with an error the page should show."""


class ReadApis:
    def __init__(self, settings: ConsoleSettings, http: httpx.AsyncClient) -> None:
        self.settings, self.http = settings, http

    async def get(self, service: str, path: str, missing_ok: bool = False) -> Any:
        url = self.settings.service_url(service) + path
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            raise ReadFailed(
                f"{service} did not answer at {url}: {exc!r} (is the stack up? make up)"
            ) from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            raise ReadFailed(f"{service} answered {response.status_code} for {path}: {response.text[:300]}")
        return response.json()

    async def invoice(self, invoice_id: str) -> Any:
        return await self.get("invoicing", f"/invoices/{quote(invoice_id, safe='')}", missing_ok=True)

    async def customer(self, customer_id: str) -> dict[str, Any]:
        """Everything the customer page shows, one service at a time."""
        c = quote(customer_id, safe="")
        return {
            "invoices": (await self.get("invoicing", f"/customers/{c}/invoices"))["invoices"],
            "credit_view": (await self.get("credits", f"/customers/{c}/invoices"))["invoices"],
            "balances": (await self.get("credits", f"/customers/{c}/balances"))["balances"],
            "payments": await self.get("payments", f"/customers/{c}/payments"),
            "rule_set": await self.get("rules", f"/customers/{c}/rule-set"),
        }

    async def ledger(self, customer_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (
            await self.get("credits", f"/customers/{quote(customer_id, safe='')}/ledger")
        )["entries"]
        return found

    async def rule_set(self, rule_set_id: str) -> Any:
        return await self.get("rules", f"/rule-sets/{quote(rule_set_id, safe='')}", missing_ok=True)

    async def dry_run(
        self, rule_set_id: str, version: int, currency: str, lines: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The rules service's evaluation of `version` on `lines` (read only). A refusal
        (400: e.g. a line in another currency) is raised as ReadFailed with its reason."""
        url = (
            self.settings.service_url("rules")
            + f"/rule-sets/{quote(rule_set_id, safe='')}/versions/{version}/dry-run"
        )
        try:
            response = await self.http.post(url, json={"currency": currency, "lines": lines})
        except httpx.HTTPError as exc:
            raise ReadFailed(f"rules did not answer at {url}: {exc!r} (is the stack up? make up)") from exc
        if response.status_code != 200:
            raise ReadFailed(f"rules refused the dry run ({response.status_code}): {response.text[:300]}")
        answer: dict[str, Any] = response.json()
        return answer

    async def service_health(self, service: str) -> ServiceHealth:
        """One service's /health and the lag and outbox backlog its /metrics report."""
        base = self.settings.service_url(service)
        found = ServiceHealth(service, base)
        try:
            health = await self.http.get(f"{base}/health")
            found.status = str(health.json().get("status", health.status_code))
            metrics = await self.http.get(f"{base}/metrics")
        except (httpx.HTTPError, ValueError) as exc:
            found.status = f"not answering ({exc.__class__.__name__})"
            return found
        found.read_metrics(metrics.text, self.settings.topic_prefix)
        return found


@dataclass
class ServiceHealth:
    service: str
    url: str
    status: str = "unknown"
    outbox_backlog: int | None = None
    lag_by_topic: dict[str, int] = field(default_factory=dict)
    stalled_topics: list[str] = field(default_factory=list)
    dead_lettered: int = 0

    @property
    def total_lag(self) -> int:
        return sum(self.lag_by_topic.values())

    def read_metrics(self, text: str, prefix: str) -> None:
        """Sums `tally_consumer_lag` per topic (over partitions), reads `tally_outbox_backlog`,
        `tally_consumer_stalled` and the dead-lettered count of `tally_messages_handled_total`."""
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("service") not in (None, self.service):
                    continue
                topic = labels.get("topic", "").removeprefix(prefix)
                if sample.name == "tally_consumer_lag":
                    self.lag_by_topic[topic] = self.lag_by_topic.get(topic, 0) + int(sample.value)
                elif sample.name == "tally_outbox_backlog":
                    self.outbox_backlog = int(sample.value)
                elif sample.name == "tally_consumer_stalled" and sample.value >= 1:
                    self.stalled_topics.append(topic)
                elif (
                    sample.name == "tally_messages_handled_total" and labels.get("outcome") == "dead_lettered"
                ):
                    self.dead_lettered += int(sample.value)
