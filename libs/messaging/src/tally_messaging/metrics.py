"""Prometheus metrics shared by every service (prometheus-client)."""

from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter(
    "tally_messages_handled_total",
    "Messages handled, by outcome (applied, duplicate, redelivered, rejected, dead_lettered, ignored).",
    ["service", "topic", "type", "outcome"],
)
FAILED = Counter(
    "tally_messages_failed_total",
    "Handler attempts that failed and will be retried.",
    ["service", "topic", "type"],
)
HANDLER_SECONDS = Histogram(
    "tally_handler_seconds",
    "Time to handle one message or batch, transaction included.",
    ["service", "topic"],
)
OUTBOX_BACKLOG = Gauge("tally_outbox_backlog", "Outbox rows not yet published.", ["service"])
RELAYED = Counter("tally_outbox_relayed_total", "Outbox rows published to Kafka.", ["service"])
CONSUMER_LAG = Gauge(
    "tally_consumer_lag",
    "High watermark minus position, per partition.",
    ["service", "topic", "partition"],
)
CONSUMER_STALLED = Gauge(
    "tally_consumer_stalled",
    "1 while a consumer holds its partition because it cannot record a message's outcome.",
    ["service", "topic"],
)
ENVELOPE_REFUSED = Counter(
    "tally_envelope_refused_total",
    "Messages dead-lettered by an envelope check (type_header, key, id_reused, older_than_window).",
    ["service", "topic", "check"],
)
OUTBOX_SET_ASIDE = Counter(
    "tally_outbox_set_aside_total",
    "Outbox rows Kafka refused for good, moved to tally_outbox_rejected.",
    ["service", "topic"],
)
