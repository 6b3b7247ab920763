"""`tally` commands refusing bad input before anything is sent: no broker is needed (exit code 2)."""

import datetime as dt
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tally_cli.main import app, outcome_table, verdict
from tally_cli.watching import Seen
from tally_contracts import CommandCompleted, CommandRejected, Envelope
from tally_contracts.invoicing import CustomerUpserted, InvoiceCloseFailed, RunBilling, UpsertCustomer

runner = CliRunner()
NO_BROKER = ("--bootstrap", "127.0.0.1:1")  # nothing listens there: a command that got this far would fail


def test_usage_with_a_quantity_that_is_not_a_number_is_refused_naming_the_field() -> None:
    done = runner.invoke(
        app,
        ["usage", "-c", "cus_1", "--service", "voice", "--quantity", "abc", "--unit", "minute", *NO_BROKER],
    )

    assert done.exit_code == 2, done.output
    assert "quantity" in done.output


def test_usage_without_its_required_flags_names_them() -> None:
    done = runner.invoke(app, ["usage", "-c", "cus_1", *NO_BROKER])

    assert done.exit_code == 2
    assert "--service, --quantity, --unit required" in done.output


def test_usage_from_a_missing_file_is_refused(tmp_path: Path) -> None:
    done = runner.invoke(app, ["usage", "-f", str(tmp_path / "absent.jsonl"), *NO_BROKER])

    assert done.exit_code == 2
    assert "absent.jsonl" in done.output


def test_send_without_a_type_or_file_is_refused() -> None:
    done = runner.invoke(app, ["send", *NO_BROKER])

    assert done.exit_code == 2
    assert "give a TYPE with fields, or --file" in done.output


def test_send_of_an_event_type_is_refused_listing_the_commands() -> None:
    done = runner.invoke(app, ["send", "InvoiceFinalized", "-c", "cus_1", *NO_BROKER])

    assert done.exit_code == 2
    assert "is not a command" in done.output and "GrantCredit" in done.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--data", "[1]"], "--data must be a JSON object"),
        (["--data", "{"], "cannot send"),
        (["currency=DOLLARS"], "currency"),
        (["currency"], "expected key=value"),
    ],
)
def test_send_with_bad_data_is_refused_before_sending(args: list[str], reason: str) -> None:
    done = runner.invoke(app, ["send", "UpsertCustomer", "-c", "cus_1", *args, *NO_BROKER])

    assert done.exit_code == 2
    assert reason in done.output


def test_a_dead_letter_or_a_rejection_makes_the_verdict_and_silence_means_no_answer() -> None:
    command = Envelope.new(UpsertCustomer(currency="USD"), customer_id="cus_1")
    accepted = Envelope.new(
        CustomerUpserted(currency="USD", billing_day=1), customer_id="cus_1", correlation_id=str(command.id)
    )
    rejected = Envelope.new(
        CommandRejected(command_id=str(command.id), command_type="UpsertCustomer", code="x", reason="why"),
        customer_id="cus_1",
    )

    assert verdict([Seen("invoicing.events", accepted, None)]) == (0, None)
    assert verdict([Seen("invoicing.events", rejected, None)]) == (1, "rejected (x): why")
    assert verdict([Seen("invoicing.commands.dlq", None, {"error": "bad"})]) == (1, "dead-lettered: bad")
    code, reason = verdict([])
    assert code == 2 and reason is not None and "no answer" in reason


def test_a_bill_run_that_could_not_close_an_invoice_is_not_a_success() -> None:
    run = Envelope.new(RunBilling(as_of=dt.date(2026, 12, 1)), customer_id=None)
    closed_elsewhere = Envelope.new(
        CommandCompleted(command_id=str(run.id), command_type="RunBilling", outcome="nothing_to_do"),
        customer_id="cus_1",
    )
    failed = Envelope.new(
        InvoiceCloseFailed(
            invoice_id="inv-1", code="total_over_cap", reason="too much", as_of=dt.date(2026, 12, 1)
        ),
        customer_id="cus_2",
    )

    code, reason = verdict(
        [Seen("invoicing.events", closed_elsewhere, None), Seen("invoicing.events", failed, None)]
    )

    assert code == 1
    assert reason is not None and "inv-1 (total_over_cap): too much" in reason


def test_the_outcome_table_shows_events_and_dead_letters() -> None:
    command = Envelope.new(UpsertCustomer(currency="USD"), customer_id="cus_1")
    accepted = Envelope.new(CustomerUpserted(currency="USD", billing_day=1), customer_id="cus_1")
    console = Console(width=200, record=True)

    console.print(outcome_table(command, [Seen("invoicing.events", accepted, None),
                                          Seen("usage.dlq", None, {"error": "unpriced usage"})]))  # fmt: skip

    shown = console.export_text()
    assert f"UpsertCustomer {command.id}" in shown
    assert "CustomerUpserted" in shown and "cus_1" in shown and '"currency":"USD"' in shown
    assert "dead letter" in shown and "unpriced usage" in shown


def test_statement_when_a_service_does_not_answer_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLY_INVOICING_URL", "http://127.0.0.1:1")

    done = runner.invoke(app, ["statement", "cus_1"])

    assert done.exit_code == 2
    assert "cannot fetch the statement" in done.output and "make up" in done.output
