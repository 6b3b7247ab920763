"""InvoiceCloseFailed: a bill run's report of the one invoice it could not close."""

import datetime as dt
import uuid
from typing import Any

import pydantic
import pytest

from tally_contracts import Envelope, parse_message, topics
from tally_contracts.invoicing import InvoiceCloseFailed


def failed(**changes: Any) -> InvoiceCloseFailed:
    fields: dict[str, Any] = {
        "invoice_id": "inv-5",
        "code": "total_over_cap",
        "reason": "subtotal: not below the cap of 1,000,000,000,000,000,000 for a sum",
        "as_of": dt.date(2026, 12, 1),
    }
    return InvoiceCloseFailed(**{**fields, **changes})


def test_invoice_close_failed_round_trips_through_json_with_its_customer_and_cause() -> None:
    run_id = uuid.uuid4()
    sent = Envelope.new(failed(), customer_id="cus_42", causation_id=str(run_id))

    parsed = parse_message(sent.to_json())

    assert type(parsed.data) is InvoiceCloseFailed and parsed.data == sent.data
    assert (parsed.customer_id, parsed.causation_id) == ("cus_42", str(run_id))
    assert parsed.data.as_of == dt.date(2026, 12, 1)


def test_invoice_close_failed_is_an_invoicing_event() -> None:
    assert "InvoiceCloseFailed" in topics.TOPIC_MESSAGES[topics.INVOICING_EVENTS]
    assert not InvoiceCloseFailed.is_command


def test_invoice_close_failed_is_frozen_forbids_extra_fields_and_describes_each_field() -> None:
    event = failed()

    with pytest.raises(pydantic.ValidationError):
        event.code = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        InvoiceCloseFailed.model_validate({**event.model_dump(), "customer_id": "c"})
    assert all(f.description for f in InvoiceCloseFailed.model_fields.values())


@pytest.mark.parametrize("field", ["invoice_id", "code", "reason", "as_of"])
def test_invoice_close_failed_needs_every_field(field: str) -> None:
    document = failed().model_dump(mode="json")
    del document[field]

    with pytest.raises(pydantic.ValidationError, match=field):
        InvoiceCloseFailed.model_validate(document)
