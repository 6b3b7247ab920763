"""The payments service's only SQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from payments.domain import (
    Deduction,
    DeductionStatus,
    KnownInvoice,
    Payment,
    PaymentsState,
    PaymentStatus,
    Record,
    Refund,
    RefundStatus,
)
from tally_contracts import Money
from tally_contracts.invoicing import InvoiceStatus
from tally_contracts.payments import PaymentMethod
from tally_messaging.db import DbConnection

_PAYMENT_COLUMNS = (
    "payment_id, invoice_id, amount, currency, method, reference, received_on, status, reversal_reason"
)
_DEDUCTION_COLUMNS = "deduction_id, amount, currency, reason, grant_id, status"
_REFUND_COLUMNS = "refund_id, amount, currency, method, reference, status, paid_out, failure_reason"
_INVOICE_COLUMNS = "invoice_id, currency, status"


def _payment(row: Any) -> Payment:
    return Payment(
        payment_id=row["payment_id"],
        invoice_id=row["invoice_id"],
        amount=Money(amount=row["amount"], currency=row["currency"]),
        method=cast(PaymentMethod, row["method"]),
        reference=row["reference"],
        received_on=row["received_on"],
        status=cast(PaymentStatus, row["status"]),
        reversal_reason=row["reversal_reason"],
    )


def _deduction(row: Any) -> Deduction:
    return Deduction(
        deduction_id=row["deduction_id"],
        amount=Money(amount=row["amount"], currency=row["currency"]),
        reason=row["reason"],
        grant_id=row["grant_id"],
        status=cast(DeductionStatus, row["status"]),
    )


def _refund(row: Any) -> Refund:
    paid_out = row["paid_out"]
    return Refund(
        refund_id=row["refund_id"],
        amount=Money(amount=row["amount"], currency=row["currency"]),
        method=cast(PaymentMethod, row["method"]),
        reference=row["reference"],
        status=cast(RefundStatus, row["status"]),
        paid_out=Money(amount=paid_out, currency=row["currency"]) if paid_out is not None else None,
        failure_reason=row["failure_reason"],
    )


def _invoice(row: Any) -> KnownInvoice:
    return KnownInvoice(row["invoice_id"], row["currency"], cast(InvoiceStatus, row["status"]))


class PaymentsStore:
    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn

    # -- the domain's state ---------------------------------------------------------

    async def state(
        self,
        customer_id: str,
        *,
        payments: Iterable[str] = (),
        deductions: Iterable[str] = (),
        refunds: Iterable[str] = (),
        invoices: Iterable[str | None] = (),
    ) -> PaymentsState:
        """The customer's records the message names (the handler holds the customer's lock)."""
        state = PaymentsState()
        queries = (
            ("payments", _PAYMENT_COLUMNS, "payment_id", list(payments), _payment),
            ("deductions", _DEDUCTION_COLUMNS, "deduction_id", list(deductions), _deduction),
            ("refunds", _REFUND_COLUMNS, "refund_id", list(refunds), _refund),
            (
                "known_invoices",
                _INVOICE_COLUMNS,
                "invoice_id",
                [i for i in invoices if i is not None],
                _invoice,
            ),
        )
        for table, columns, key, ids, parse in queries:
            if not ids:
                continue
            rows = await self.conn.fetch(
                f"select {columns} from {table} where customer_id = $1 and {key} = any($2::text[])",
                customer_id,
                ids,
            )
            for row in rows:
                record: Record = parse(row)
                state = state.put(record)
        return state

    async def save(self, customer_id: str, record: Record) -> None:
        """Insert `record`, or update what can change of it (statuses and their details)."""
        match record:
            case Payment():
                await self.conn.execute(
                    "insert into payments (customer_id, payment_id, invoice_id, amount, currency, method,"
                    " reference, received_on, status, reversal_reason)"
                    " values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) on conflict (customer_id, payment_id)"
                    " do update set status = excluded.status, reversal_reason = excluded.reversal_reason",
                    customer_id,
                    record.payment_id,
                    record.invoice_id,
                    record.amount.amount,
                    record.amount.currency,
                    record.method,
                    record.reference,
                    record.received_on,
                    record.status,
                    record.reversal_reason,
                )
            case Deduction():
                await self.conn.execute(
                    "insert into deductions (customer_id, deduction_id, amount, currency, reason, grant_id,"
                    " status) values ($1, $2, $3, $4, $5, $6, $7) on conflict (customer_id, deduction_id)"
                    " do update set status = excluded.status",
                    customer_id,
                    record.deduction_id,
                    record.amount.amount,
                    record.amount.currency,
                    record.reason,
                    record.grant_id,
                    record.status,
                )
            case Refund():
                await self.conn.execute(
                    "insert into refunds (customer_id, refund_id, amount, currency, method, reference, status,"
                    " paid_out, failure_reason) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    " on conflict (customer_id, refund_id) do update set status = excluded.status,"
                    " paid_out = excluded.paid_out, failure_reason = excluded.failure_reason",
                    customer_id,
                    record.refund_id,
                    record.amount.amount,
                    record.amount.currency,
                    record.method,
                    record.reference,
                    record.status,
                    record.paid_out.amount if record.paid_out is not None else None,
                    record.failure_reason,
                )
            case KnownInvoice():
                await self.conn.execute(
                    "insert into known_invoices (customer_id, invoice_id, currency, status)"
                    " values ($1, $2, $3, $4) on conflict (customer_id, invoice_id)"
                    " do update set currency = excluded.currency, status = excluded.status",
                    customer_id,
                    record.invoice_id,
                    record.currency,
                    record.status,
                )

    # -- read API -------------------------------------------------------------------

    async def payments(self, customer_id: str) -> list[Payment]:
        rows = await self.conn.fetch(
            f"select {_PAYMENT_COLUMNS} from payments where customer_id = $1 order by created_seq",
            customer_id,
        )
        return [_payment(r) for r in rows]

    async def deductions(self, customer_id: str) -> list[Deduction]:
        rows = await self.conn.fetch(
            f"select {_DEDUCTION_COLUMNS} from deductions where customer_id = $1 order by created_seq",
            customer_id,
        )
        return [_deduction(r) for r in rows]

    async def refunds(self, customer_id: str) -> list[Refund]:
        rows = await self.conn.fetch(
            f"select {_REFUND_COLUMNS} from refunds where customer_id = $1 order by created_seq", customer_id
        )
        return [_refund(r) for r in rows]
