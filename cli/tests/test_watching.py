"""Reading records as `tally tail` and `tally send` do: decoding, filtering, correlating."""

import json

from tally_cli.watching import correlated, readable, selected
from tally_contracts import Envelope
from tally_contracts.invoicing import UpsertCustomer


def test_a_json_object_reads_as_itself() -> None:
    assert readable(b'{"type": "X", "customer_id": "c"}') == {"type": "X", "customer_id": "c"}


def test_values_that_are_not_json_objects_are_kept_under_raw() -> None:
    assert readable(b"[1, 2]") == {"raw": [1, 2]}
    assert readable(b'"text"') == {"raw": "text"}
    assert readable(b"not json") == {"raw": "not json"}
    assert readable(b"\xff\xfe{") == {"raw": "\ufffd\ufffd{"}


def test_tail_filters_by_customer_and_type() -> None:
    doc = {"type": "CreditGranted", "customer_id": "cus_1"}

    assert selected(doc, None, None)
    assert selected(doc, "cus_1", "CreditGranted")
    assert not selected(doc, "cus_2", None)
    assert not selected(doc, None, "CreditApplied")


def test_a_dead_letter_is_selected_by_its_type_name_deadletter() -> None:
    dead = {"topic": "usage", "error": "bad", "raw": "x"}

    assert selected(dead, None, "DeadLetter")
    assert not selected(dead, "cus_1", None)


def test_an_event_with_the_commands_correlation_id_is_part_of_its_outcome() -> None:
    command = Envelope.new(UpsertCustomer(currency="USD"), customer_id="cus_1")
    caused = Envelope.new(UpsertCustomer(currency="EUR"), customer_id="cus_1", correlation_id=str(command.id))
    other = Envelope.new(UpsertCustomer(currency="EUR"), customer_id="cus_1")

    seen = correlated("invoicing.events", caused.to_json(), str(command.id), str(command.id))

    assert seen is not None and seen.envelope is not None and seen.envelope.id == caused.id
    assert correlated("invoicing.events", other.to_json(), str(command.id), str(command.id)) is None
    assert correlated("invoicing.events", b"garbage", str(command.id), str(command.id)) is None


def test_a_dead_letter_holding_the_command_is_part_of_its_outcome() -> None:
    command = Envelope.new(UpsertCustomer(currency="USD"), customer_id="cus_1")
    dead = json.dumps({"error": "boom", "raw": command.to_json().decode()}).encode()

    seen = correlated("invoicing.commands.dlq", dead, str(command.id), str(command.id))

    assert seen is not None and seen.raw is not None and seen.raw["error"] == "boom"
    assert correlated("invoicing.commands.dlq", b"not json", str(command.id), str(command.id)) is None
