"""The `tally` CLI run as a subprocess against the running stack."""

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from tally_messaging.testing import Infra

from .conftest import Stack

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
