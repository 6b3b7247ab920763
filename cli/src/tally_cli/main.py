"""`tally`: the operator's command line for Tally.

    tally send GrantCredit -c cus_1 grant_id=g1 kind=promotional source=promo_code \\
        amount='{"amount": "10.00", "currency": "USD"}'
    tally send ApplyCredits -c cus_1 invoice_id=inv-7 amount.amount=20.00 amount.currency=USD
    tally send -f rules.yaml          # one or many commands from YAML / JSON / JSON lines
    tally usage -c cus_1 --service voice --quantity 12 --unit minute --destination 44
    tally tail credits.events --customer cus_1
    tally statement cus_1

Kafka is found at $TALLY_KAFKA_BOOTSTRAP (default 127.0.0.1:9092). On a broker with
identities the CLI is `ops`, and `tally usage` is `usage-producer`: their passwords come
from TALLY_KAFKA_USERNAME/TALLY_KAFKA_PASSWORD, TALLY_KAFKA_CREDENTIALS_DIR, or the local
broker's `.local/kafka-<port>/credentials`. Exit codes: 0 the command was accepted; 1 it
was rejected or dead-lettered (the reason is printed); 2 bad input, no answer in time, or
refused by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tally_cli.connection import OPERATOR, USAGE_PRODUCER, KafkaAccess, kafka_access
from tally_cli.messages import (
    InputError,
    build,
    from_document,
    load_documents,
    parse_assignments,
    topic_for,
    usage_from_flags,
)
from tally_cli.replaying import Replay, choose_replays
from tally_cli.statement import fetch_statement, render
from tally_cli.watching import OutcomeWatcher, Seen, TopicsMissing, dead_letters, readable, selected, tail
from tally_contracts import Envelope, message_key
from tally_contracts.topics import USAGE

app = typer.Typer(
    help="Tally's operator command line: send commands and see their outcome, publish usage, tail topics.\n\n"
    "Exit codes: 0 accepted; 1 rejected or dead-lettered (the reason is printed); 2 bad input or no answer.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

Bootstrap = Annotated[
    str | None, typer.Option("--bootstrap", envvar="TALLY_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")
]
Prefix = Annotated[
    str, typer.Option("--topic-prefix", envvar="TALLY_TOPIC_PREFIX", help="Topic name prefix.")
]


async def publish(
    kafka: KafkaAccess, prefix: str, messages: list[Envelope[Any]], topic: str | None = None
) -> None:
    producer = AIOKafkaProducer(enable_idempotence=True, linger_ms=5, **kafka.options())
    await producer.start()
    try:
        futures = [
            await producer.send(
                prefix + (topic or topic_for(m.type)),
                value=m.to_json(),
                key=message_key(m).encode(),
                headers=[("type", m.type.encode())],
            )
            for m in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def outcome_table(command: Envelope[Any], seen: list[Seen]) -> Table:
    table = Table(title=f"{command.type} {command.id}", show_lines=False)
    for column in ("topic", "type", "customer", "details"):
        table.add_column(column)
    for item in seen:
        if item.envelope is not None:
            e = item.envelope
            details = json.dumps(e.data.model_dump(mode="json"), separators=(",", ":"))
            table.add_row(item.topic, e.type, e.customer_id or "-", details[:160])
        else:
            table.add_row(item.topic, "dead letter", "-", str((item.raw or {}).get("error", ""))[:300])
    return table


def verdict(seen: list[Seen]) -> tuple[int, str | None]:
    """The exit code and, when not accepted, the reason: a dead letter or a rejection wins."""
    for item in seen:
        if item.raw is not None:
            return 1, f"dead-lettered: {item.raw.get('error')}"
        if item.envelope is not None and item.envelope.type == "CommandRejected":
            data = item.envelope.data
            return 1, f"rejected ({data.code}): {data.reason}"
    failed = [
        i.envelope.data for i in seen if i.envelope is not None and i.envelope.type == "InvoiceCloseFailed"
    ]
    if failed:
        reasons = "; ".join(f"{f.invoice_id} ({f.code}): {f.reason}" for f in failed)
        return 1, f"partly done, {len(failed)} invoice(s) not closed: {reasons}"
    return (0, None) if seen else (2, "no answer in time: is the stack running? (make up)")


async def _send_and_wait(
    kafka: KafkaAccess,
    prefix: str,
    commands: list[Envelope[Any]],
    wait: bool,
    timeout: float,
    settle: float,
    as_json: bool,
) -> int:
    if not wait:
        await publish(kafka, prefix, commands)
        for c in commands:
            out.print(f"sent {c.type} {c.id}")
        return 0
    worst = 0
    async with OutcomeWatcher(kafka, prefix) as watcher:
        for command in commands:
            await publish(kafka, prefix, [command])
            seen = await watcher.collect(command, timeout, settle)
            code, reason = verdict(seen)
            if as_json:
                for item in seen:
                    out.print_json(item.envelope.model_dump_json() if item.envelope else json.dumps(item.raw))
            else:
                out.print(outcome_table(command, seen))
            if reason:
                err.print(f"[red]{command.type} {command.id}: {reason}[/red]")
            worst = max(worst, code)
    return worst


@app.command()
def send(
    type_name: Annotated[
        str | None, typer.Argument(metavar="TYPE", help="Command type, e.g. GrantCredit.")
    ] = None,
    fields: Annotated[list[str] | None, typer.Argument(help="key=value fields of `data`.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", "-c", help="customer_id.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="JSON, JSON lines or YAML.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="`data` as JSON.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the outcome and print it.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 30.0,
    settle: Annotated[float, typer.Option(help="Seconds of quiet that end the flow.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = "",
) -> None:
    """Send a command (flags, --data or --file), wait for its outcome by correlation id."""
    try:
        if file is not None:
            commands = [from_document(d, type_name, customer) for d in load_documents(file)]
        elif type_name is not None:
            topic_for(type_name)  # an event or an unknown type is refused before its fields are checked
            body = json.loads(data) if data else {}
            if not isinstance(body, dict):
                raise InputError("--data must be a JSON object")
            body.update(parse_assignments(fields or []))
            commands = [build(type_name, customer, body)]
        else:
            raise InputError("give a TYPE with fields, or --file")
        for c in commands:
            topic_for(c.type)
    except (InputError, ValidationError, json.JSONDecodeError, OSError) as exc:
        err.print(f"[red]cannot send: {exc}[/red]")
        raise typer.Exit(2) from None
    try:
        code = asyncio.run(
            _send_and_wait(
                kafka_access(bootstrap, OPERATOR), prefix, commands, wait, timeout, settle, as_json
            )
        )
    except TopicsMissing as exc:
        err.print(f"[red]cannot wait for the outcome: {exc}[/red]")
        raise typer.Exit(2) from None
    except KafkaError as exc:
        err.print(f"[red]cannot send: {_refusal(exc)}[/red]")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def usage(
    customer: Annotated[str | None, typer.Option("--customer", "-c")] = None,
    service: Annotated[str | None, typer.Option(help="Service used, e.g. voice.")] = None,
    quantity: Annotated[str | None, typer.Option(help="Quantity (decimal).")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit, e.g. minute.")] = None,
    destination: Annotated[str | None, typer.Option(help="Destination prefix, e.g. 44.")] = None,
    amount: Annotated[str | None, typer.Option(help="Pre-rated amount (decimal).")] = None,
    currency: Annotated[str | None, typer.Option(help="Currency of --amount.")] = None,
    at: Annotated[str | None, typer.Option(help="When it happened (RFC 3339); default now.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Many UsageRecorded (JSON lines, JSON or YAML).")
    ] = None,
    bootstrap: Bootstrap = None,
    prefix: Prefix = "",
) -> None:
    """Publish usage: one event from flags, or a file of them."""
    try:
        if file is not None:
            events = [from_document(d, "UsageRecorded", customer) for d in load_documents(file)]
        else:
            events = [usage_from_flags(customer, service, quantity, unit, destination, amount, currency, at)]
    except (InputError, ValidationError, ValueError, OSError) as exc:
        err.print(f"[red]cannot publish: {exc}[/red]")
        raise typer.Exit(2) from None
    try:
        asyncio.run(publish(kafka_access(bootstrap, USAGE_PRODUCER), prefix, events, USAGE))
    except KafkaError as exc:
        err.print(f"[red]cannot publish: {_refusal(exc)}[/red]")
        raise typer.Exit(2) from None
    out.print(f"published {len(events)} usage event(s) to {prefix}{USAGE}")


@app.command("tail")
def tail_topic(
    topic: Annotated[str, typer.Argument(help="Topic, e.g. credits.events or usage.dlq.")],
    customer: Annotated[str | None, typer.Option("--customer", "-c", help="Only this customer.")] = None,
    type_name: Annotated[str | None, typer.Option("--type", "-t", help="Only this message type.")] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest message.")] = False,
    limit: Annotated[int, typer.Option(help="Stop after this many (0: never).")] = 0,
    bootstrap: Bootstrap = None,
    prefix: Prefix = "",
) -> None:
    """Pretty-print a topic's messages live (plain kcat works too: values are JSON)."""

    async def run() -> None:
        shown = 0
        records = tail(kafka_access(bootstrap, OPERATOR), prefix + topic, from_beginning)
        async with contextlib.aclosing(records):  # stops the consumer when --limit ends the loop
            async for partition, offset, value in records:
                doc = readable(value)
                if not selected(doc, customer, type_name):
                    continue
                out.print(
                    f"[dim]{topic}[{partition}]@{offset}[/dim] [bold]{doc.get('type', 'DeadLetter')}[/bold] {doc.get('customer_id') or ''}"
                )
                out.print_json(data=doc.get("data", doc))
                shown += 1
                if limit and shown >= limit:
                    return

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
    except TopicsMissing as exc:
        err.print(f"[red]cannot tail: {exc}[/red]")
        raise typer.Exit(2) from None


async def _publish_replays(kafka: KafkaAccess, replays: list[Replay]) -> None:
    producer = AIOKafkaProducer(enable_idempotence=True, **kafka.options())
    await producer.start()
    try:
        for replay in replays:
            await producer.send_and_wait(replay.topic, replay.value, key=replay.key)
    finally:
        await producer.stop()


@app.command()
def replay(
    topic: Annotated[str, typer.Argument(help="The original topic, e.g. usage (reads usage.dlq).")],
    contains: Annotated[
        str | None, typer.Option(help="Only dead letters whose raw value contains this.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Publish; without it, only list what would be.")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = "",
) -> None:
    """Re-publish dead letters to the topic they came from once the cause is fixed (duplicates are dropped by the inbox)."""
    try:
        found = asyncio.run(dead_letters(kafka_access(bootstrap, OPERATOR), prefix + topic))
    except TopicsMissing as exc:
        err.print(f"[red]cannot replay: {exc}[/red]")
        raise typer.Exit(2) from None
    replays, refused = choose_replays(found, prefix + topic, contains)
    for chosen in replays:
        out.print(f"{chosen.origin} {chosen.error[:200]}")
    for reason in refused:
        err.print(reason)
    if not yes:
        out.print(f"{len(replays)} dead letter(s) would be re-published to {topic}; add --yes to do it")
        return
    try:
        asyncio.run(_publish_replays(kafka_access(bootstrap, OPERATOR), replays))
    except KafkaError as exc:
        err.print(f"[red]cannot replay: {_refusal(exc)}[/red]")
        raise typer.Exit(2) from None
    out.print(f"re-published {len(replays)} dead letter(s) to {topic}")


def _refusal(exc: KafkaError) -> str:
    """Why the broker refused, in words an operator can act on."""
    if isinstance(exc, TopicAuthorizationFailedError):
        return (
            f"the broker refused: this principal may not write or read that topic ({exc}). "
            "Commands and usage replays go to their topics as `ops`; only a service writes its "
            "own `*.events` topic, so a dead letter of an events topic is replayed by fixing its "
            "consumer, not by re-publishing it"
        )
    return f"Kafka error: {exc}"


@app.command()
def statement(
    customer: Annotated[str, typer.Argument(help="customer_id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw read-API answers.")] = False,
) -> None:
    """Print a customer's statement: invoices with lines, credits, payments, amount due, balances."""
    import httpx

    try:
        found = asyncio.run(fetch_statement(customer))
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot fetch the statement: {exc} (is the stack running? make up)[/red]")
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(data=found.__dict__)
    else:
        out.print(render(found))


if __name__ == "__main__":
    app()
