"""Building messages from what a person types: key=value fields, files, usage flags."""

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tally_cli.messages import (
    InputError,
    build,
    from_document,
    load_documents,
    parse_assignments,
    topic_for,
    usage_from_flags,
)
from tally_contracts import Money
from tally_contracts.topics import CREDITS_COMMANDS, INVOICING_COMMANDS, USAGE


def test_assignments_are_strings_unless_they_read_as_json_objects_lists_or_literals() -> None:
    parsed = parse_assignments(
        ["name=Plan", 'fee={"amount": "30.00", "currency": "USD"}', "tags=[1, 2]", "flag=true", "gone=null"]
    )

    assert parsed == {
        "name": "Plan",
        "fee": {"amount": "30.00", "currency": "USD"},
        "tags": [1, 2],
        "flag": True,
        "gone": None,
    }


def test_numbers_stay_strings_so_no_amount_passes_through_a_float() -> None:
    assert parse_assignments(["quantity=12.50", "count=3"]) == {"quantity": "12.50", "count": "3"}


def test_dotted_keys_build_nested_objects() -> None:
    parsed = parse_assignments(["amount.amount=12.50", "amount.currency=USD", "a.b.c=x"])

    assert parsed == {"amount": {"amount": "12.50", "currency": "USD"}, "a": {"b": {"c": "x"}}}


def test_only_the_first_equals_sign_splits_key_from_value() -> None:
    assert parse_assignments(["reason=a=b"]) == {"reason": "a=b"}


@pytest.mark.parametrize("pair", ["no-equals", "=value"])
def test_a_pair_without_key_or_equals_sign_is_refused(pair: str) -> None:
    with pytest.raises(InputError, match="expected key=value"):
        parse_assignments([pair])


def test_broken_json_is_refused_naming_the_key() -> None:
    with pytest.raises(InputError, match=r"^fee: "):
        parse_assignments(['fee={"amount": '])


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.text(max_size=20), max_size=5))
def test_plain_text_values_come_back_as_typed(fields: dict[str, str]) -> None:
    plain = {k: v for k, v in fields.items() if v[:1] not in "{[" and v not in ("true", "false", "null")}

    assert parse_assignments([f"{k}={v}" for k, v in plain.items()]) == plain


def test_each_command_goes_to_its_commands_topic() -> None:
    assert topic_for("UpsertCustomer") == INVOICING_COMMANDS
    assert topic_for("GrantCredit") == CREDITS_COMMANDS
    assert topic_for("UsageRecorded") == USAGE


def test_an_event_is_not_sendable_and_the_error_lists_what_is() -> None:
    with pytest.raises(InputError, match=r"'InvoiceFinalized' is not a command; one of: .*GrantCredit"):
        topic_for("InvoiceFinalized")


def test_build_validates_data_against_the_message_model() -> None:
    built = build("UpsertCustomer", "cus_1", {"currency": "EUR"})

    assert (built.type, built.customer_id, built.data.currency) == ("UpsertCustomer", "cus_1", "EUR")


def test_build_refuses_an_unknown_type_and_invalid_data() -> None:
    with pytest.raises(InputError, match="unknown message type 'Nope'"):
        build("Nope", None, {})
    with pytest.raises(ValidationError, match="currency"):
        build("UpsertCustomer", "cus_1", {"currency": "DOLLARS"})


def test_a_full_envelope_document_keeps_its_id() -> None:
    original = build("UpsertCustomer", "cus_1", {"currency": "USD"})

    again = from_document(json.loads(original.to_json()))

    assert (again.id, again.type, again.customer_id) == (original.id, "UpsertCustomer", "cus_1")


def test_a_document_with_type_and_data_and_a_bare_document_of_the_default_type() -> None:
    typed = from_document({"type": "UpsertCustomer", "customer_id": "cus_2", "data": {"currency": "USD"}})
    bare = from_document({"currency": "EUR"}, "UpsertCustomer", "cus_3")

    assert (typed.type, typed.customer_id) == ("UpsertCustomer", "cus_2")
    assert (bare.type, bare.customer_id, bare.data.currency) == ("UpsertCustomer", "cus_3", "EUR")


def test_a_bare_document_without_a_type_is_refused() -> None:
    with pytest.raises(InputError, match="needs --type"):
        from_document({"currency": "EUR"})


def test_documents_from_yaml_json_lines_and_json_arrays(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("type: A\n---\ntype: B\n---\n")
    (tmp_path / "b.jsonl").write_text('{"type": "C"}\n\n{"type": "D"}\n')
    (tmp_path / "c.json").write_text('[{"type": "E"}, [{"type": "F"}]]')

    found = [load_documents(tmp_path / name) for name in ("a.yaml", "b.jsonl", "c.json")]

    assert [[d["type"] for d in docs] for docs in found] == [["A", "B"], ["C", "D"], ["E", "F"]]


def test_a_document_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[1, 2]")

    with pytest.raises(InputError, match="every message must be an object"):
        load_documents(path)


def test_usage_from_flags_is_a_usage_event_of_the_customer_at_the_given_time() -> None:
    event = usage_from_flags(
        "cus_1", "voice", "12.5", "minute", destination="44", amount="3.10", currency="EUR",
        at="2026-11-02T09:00:00Z",
    )  # fmt: skip

    assert event.type == "UsageRecorded" and event.customer_id == "cus_1"
    assert (event.data.service, event.data.quantity, event.data.unit) == ("voice", Decimal("12.5"), "minute")
    assert (event.data.destination, event.data.amount) == ("44", Money.of("3.10", "EUR"))
    assert event.occurred_at == dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def test_usage_from_flags_names_every_missing_flag() -> None:
    with pytest.raises(InputError, match="--service, --unit required"):
        usage_from_flags("cus_1", None, "1", None)


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"quantity": "abc"}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"amount": "1.00"}, "--amount needs --currency"),
        ({"amount": "1.00", "currency": "DOLLARS"}, "currency"),
        ({"amount": "-1.00", "currency": "USD"}, "must not be negative"),
        ({"at": "yesterday"}, "not an RFC 3339 time"),
        ({"at": "2026-11-02T09:00:00"}, "no time zone"),
        ({"at": "9999-01-01T00:00:00Z"}, "occurred_at"),
    ],
)
def test_usage_from_flags_refuses_bad_values_with_a_reason(flags: dict[str, str], reason: str) -> None:
    given_flags = {"customer": "cus_1", "service": "voice", "quantity": "1", "unit": "minute", **flags}

    with pytest.raises((InputError, ValidationError), match=reason):
        usage_from_flags(**given_flags)


def test_apply_credits_to_a_chosen_invoice_is_built_from_fields() -> None:
    fields = parse_assignments(["invoice_id=inv-1", "amount.amount=20.00", "amount.currency=USD"])

    message = build("ApplyCredits", "cus_1", fields)

    assert topic_for(message.type) == CREDITS_COMMANDS
    assert (message.data.invoice_id, message.data.amount) == ("inv-1", Money.of("20.00", "USD"))
    assert json.loads(message.to_json())["data"]["amount"] == {"amount": "20.00", "currency": "USD"}


def test_a_grant_with_priority_and_scope_is_built_from_fields() -> None:
    fields = parse_assignments(
        [
            "grant_id=g-voice",
            "kind=promotional",
            "source=promo_code",
            "amount.amount=10.00",
            "amount.currency=USD",
            "priority=3",
            "scope.service=voice",
            "scope.line_kind=usage",
        ]
    )

    grant = build("GrantCredit", "cus_1", fields).data

    assert grant.priority == 3
    assert (grant.scope.line_kind, grant.scope.service) == ("usage", "voice")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (["priority=0"], "greater than or equal to 1"),
        (["priority=51"], "less than or equal to 50"),
        (["scope={}"], "a scope names a line_kind, a service or both"),
        (["scope.line_kind=adjustment"], "'usage', 'subscription' or 'one_time'"),
    ],
)
def test_a_grant_with_a_bad_priority_or_scope_is_refused_with_the_reason(
    fields: list[str], reason: str
) -> None:
    base = [
        "grant_id=g",
        "kind=promotional",
        "source=promo_code",
        "amount.amount=1.00",
        "amount.currency=USD",
    ]

    with pytest.raises(ValidationError, match=reason):
        build("GrantCredit", "cus_1", parse_assignments([*base, *fields]))
