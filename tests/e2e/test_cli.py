"""The `tally` CLI run as a subprocess against the running stack."""

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tally_contracts import topics
from tally_contracts.invoicing import Price, PutPriceList, UpsertCustomer
from tally_contracts.usage import UsageRecorded
from tally_testing import Infra, KafkaProbe

from .conftest import Stack, answered, send

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def tally(infra: Infra, prefix: str, stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(
        TALLY_KAFKA_BOOTSTRAP=infra.kafka_bootstrap,
        TALLY_TOPIC_PREFIX=prefix,
        COLUMNS="200",
        **{f"TALLY_{name.upper()}_URL": stack.url(name, "") for name in stack.processes},
    )
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tally_cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_accepted_command_prints_its_events_and_exits_zero(
    infra: Infra, topic_prefix: str, stack: Stack
) -> None:
    customer = f"cli-{uuid.uuid4().hex[:8]}"

    done = await tally(infra, topic_prefix, stack, "send", "UpsertCustomer", "-c", customer, "currency=EUR")

    assert done.returncode == 0, done.stderr
    assert "CustomerUpserted" in done.stdout


async def test_rejected_command_prints_the_reason_and_exits_non_zero(
    infra: Infra, topic_prefix: str, stack: Stack
) -> None:
    customer = f"cli-{uuid.uuid4().hex[:8]}"

    done = await tally(
        infra, topic_prefix, stack, "send", "VoidInvoice", "-c", customer, "invoice_id=inv-does-not-exist"
    )

    assert done.returncode == 1
    assert "rejected" in done.stderr and "inv-does-not-exist" in done.stderr


async def test_bad_input_is_refused_before_sending(infra: Infra, topic_prefix: str, stack: Stack) -> None:
    done = await tally(infra, topic_prefix, stack, "send", "UpsertCustomer", "-c", "x", "currency=DOLLARS")

    assert done.returncode == 2
    assert "currency" in done.stderr


async def test_statement_shows_invoices_and_balances(infra: Infra, topic_prefix: str, stack: Stack) -> None:
    customer = f"cli-{uuid.uuid4().hex[:8]}"
    assert (
        await tally(infra, topic_prefix, stack, "send", "UpsertCustomer", "-c", customer, "currency=USD")
    ).returncode == 0
    charge = (
        'amount={"amount": "12.34", "currency": "USD"}',
        "charge_id=c1",
        "description=Setup fee",
        "invoice_now=true",
    )
    sent = await tally(
        infra, topic_prefix, stack, "send", "AddCharge", "-c", customer, *charge, "--settle", "3"
    )
    assert sent.returncode == 0, sent.stderr
    await stack.until_invoices(customer, lambda invs: any(i["status"] in ("posted", "paid") for i in invs))

    shown = await tally(infra, topic_prefix, stack, "statement", customer)

    assert shown.returncode == 0, shown.stderr
    assert f"Statement for {customer}" in shown.stdout
    assert "Setup fee" in shown.stdout and "12.34" in shown.stdout
    assert "Balances" in shown.stdout


async def test_replay_yes_brings_back_only_the_asked_for_dead_letters_once_their_cause_is_fixed(
    infra: Infra, topic_prefix: str, stack: Stack, kafka: KafkaProbe
) -> None:
    run = uuid.uuid4().hex[:8]
    replayed, left = f"cli-{run}-replayed", f"cli-{run}-left"
    for who in (replayed, left):  # each on its own price list, put only after its usage failed
        upserted = await send(
            kafka, topics.INVOICING_COMMANDS, UpsertCustomer(currency="USD", price_list_id=f"pl-{who}"), who
        )
        await answered(kafka, topics.INVOICING_EVENTS, upserted, "CustomerUpserted")
        await send(
            kafka, topics.USAGE, UsageRecorded(service="sms", quantity=Decimal(7), unit="message"), who
        )
        await kafka.dead_letters(topics.USAGE, unpriced_usage_of(who))
        prices = await send(
            kafka,
            topics.INVOICING_COMMANDS,
            PutPriceList(
                price_list_id=f"pl-{who}",
                prices=[Price(service="sms", unit="message", unit_price=Decimal("0.10"), currency="USD")],
            ),
            None,
        )
        await answered(kafka, topics.INVOICING_EVENTS, prices, "PriceListChanged")

    done = await tally(infra, topic_prefix, stack, "replay", "usage", "--contains", replayed, "--yes")

    assert done.returncode == 0, done.stderr
    assert "re-published 1 dead letter(s) to usage" in done.stdout
    assert await usage_on_invoice(stack, replayed, lambda quantities: quantities == [Decimal(7)]) == [7]
    # Marker: the same customer's next usage comes after anything replay could have sent for it.
    await send(kafka, topics.USAGE, UsageRecorded(service="sms", quantity=Decimal(2), unit="message"), left)
    assert await usage_on_invoice(stack, left, lambda quantities: Decimal(2) in quantities) == [2]


def unpriced_usage_of(who: str) -> Callable[[dict[str, Any]], bool]:
    return lambda letter: letter.get("key") == who and "no price" in letter["error"]


async def usage_on_invoice(stack: Stack, who: str, check: Callable[[list[Decimal]], bool]) -> list[Decimal]:
    """The usage quantities on `who`'s pending invoice once `check` holds on them."""
    [pending] = await stack.until_invoices(who, lambda invs: len(invs) == 1)

    def quantities(body: Any) -> list[Decimal]:
        return sorted(Decimal(ln["quantity"]) for ln in body["lines"] if ln["kind"] == "usage")

    found = await stack.until(
        "invoicing", f"/invoices/{pending['invoice_id']}", lambda b: check(quantities(b))
    )
    return quantities(found)
