"""The statement as printed: invoices with their lines, credits and payments, balances."""

import re

import pytest
from rich.console import Console

from tally_cli.statement import Statement, render, service_url


def shown(statement: Statement) -> str:
    console = Console(width=200, record=True)
    console.print(render(statement))
    return console.export_text()


def invoice(
    invoice_id: str, status: str, lines: list[dict[str, object]], **extra: object
) -> dict[str, object]:
    return {
        "invoice_id": invoice_id,
        "status": status,
        "currency": "USD",
        "period_start": "2026-11-01",
        "period_end": "2026-12-01",
        "total": "42.00",
        "amount_due": "42.00",
        "lines": lines,
        **extra,
    }


def test_an_invoice_shows_its_lines_total_credits_payments_and_what_is_due() -> None:
    statement = Statement(
        "cus_1",
        invoices=[
            invoice(
                "inv-1",
                "posted",
                [
                    {
                        "kind": "usage",
                        "service": "voice",
                        "quantity": "120",
                        "unit": "minute",
                        "amount": {"amount": "40.00", "currency": "USD"},
                        "late": True,
                    },
                    {
                        "kind": "charge",
                        "description": "Setup fee",
                        "amount": {"amount": "2.00", "currency": "USD"},
                    },
                ],
                regenerated_from="inv-0",
            )
        ],
        balances_by_invoice={
            "inv-1": {"credits_applied": "10.00", "payments_applied": "5.00", "amount_due": "27.00"}
        },
    )

    text = shown(statement)

    assert "Statement for cus_1" in text
    assert "inv-1  2026-11-01 – 2026-12-01  [posted]" in text  # [posted] printed, not taken as markup
    assert "regenerated" in text and "inv-0" in text
    assert "voice (late)" in text and "120 minute" in text and "40.00 USD" in text
    assert "Setup fee" in text and "42.00 USD" in text
    assert "credits applied" in text and "10.00 USD" in text and "5.00 USD" in text
    assert "27.00 USD" in text


def test_a_pending_invoice_with_nothing_on_it_is_left_out() -> None:
    text = shown(Statement("cus_1", invoices=[invoice("inv-empty", "pending", [])]))

    assert "inv-empty" not in text


def test_amount_due_comes_from_invoicing_when_credits_has_not_seen_the_invoice() -> None:
    text = shown(Statement("cus_1", invoices=[invoice("inv-2", "posted", [], amount_due="41.50")]))

    assert "41.50 USD" in text


def test_balances_payments_deductions_and_refunds_are_listed() -> None:
    statement = Statement(
        "cus_1",
        balances=[{"currency": "EUR", "promotional": {"amount": "3.00", "currency": "EUR"}, "credit_balance": None}],
        payments={
            "payments": [{"payment_id": "p-1", "invoice_id": "inv-1", "amount": "5.00", "currency": "USD",
                          "status": "settled"}],
            "deductions": [{"deduction_id": "d-1", "amount": "1.00", "currency": "USD"}],
            "refunds": [{"refund_id": "r-1", "amount": "2.00", "currency": "USD"}],
        },
    )  # fmt: skip

    text = shown(statement)

    assert "3.00 EUR" in text
    assert "p-1" in text and "inv-1" in text and "settled" in text
    assert "d-1" in text and "recorded" in text and "r-1" in text and "2.00 USD" in text


def test_service_urls_come_from_the_environment_without_a_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TALLY_CREDITS_URL", "http://credits.example:9000/")

    assert service_url("credits") == "http://credits.example:9000"
    assert service_url("invoicing").startswith("http://127.0.0.1:")


def test_amounts_read_at_the_currency_minor_unit() -> None:
    statement = Statement(
        "cus_1",
        invoices=[invoice("inv-1", "posted", [], total="0", amount_due="0")],
        balances_by_invoice={"inv-1": {"credits_applied": "0", "payments_applied": "7.5", "amount_due": "0"}},
        balances=[{"currency": "JPY", "promotional": "0", "credit_balance": "500"}],
    )

    text = shown(statement)

    assert "credits applied" in text and "0.00 USD" in text and "7.50 USD" in text
    assert not re.search(r"(?<![\d.])0 USD", text)  # no bare "0 USD"
    assert "500 JPY" in text and "0 JPY" in text and "0.00 JPY" not in text


def test_credit_applied_to_an_invoice_is_shown_on_it() -> None:
    statement = Statement(
        "cus_1",
        invoices=[invoice("inv-1", "posted", [])],
        balances_by_invoice={"inv-1": {"credits_applied": "20.00", "payments_applied": "0.00", "amount_due": "22.00"}},
    )  # fmt: skip

    text = shown(statement)

    assert "credits applied" in text and "20.00 USD" in text and "22.00 USD" in text


def test_each_credit_applied_to_an_invoice_is_shown_with_its_source() -> None:
    applications = [
        {"application_id": "a/1", "source_type": "promotional", "source_id": "g-voice", "amount": "12.50"},
        {
            "application_id": "a/2",
            "source_type": "credit_balance",
            "source_id": "manual:m-1",
            "amount": "7.50",
        },
        {"application_id": "a/3", "source_type": "payment", "source_id": "p-1", "amount": "5.00"},
    ]
    statement = Statement(
        "cus_1",
        invoices=[invoice("inv-1", "posted", [])],
        balances_by_invoice={
            "inv-1": {
                "credits_applied": "20.00",
                "payments_applied": "5.00",
                "amount_due": "17.00",
                "applications": applications,
            }
        },
    )

    text = shown(statement)

    assert re.search(r"promotional credit g-voice\s.*12\.50 USD", text)
    assert re.search(r"credit balance manual:m-1\s.*7\.50 USD", text)
    assert "p-1" not in text.split("payments applied")[0]  # a payment is not credit
