"""The compiled usage decoder against the pydantic contract: for any input, it either
declines (pydantic then decides) or gives exactly pydantic's envelope; through
`parse_usage_message`, every input is accepted or refused as by `parse_message`, with the
same values and the same reasons. And the usual messages take the fast path."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from invoicing.usage_decoder import decode_usage, parse_usage_message
from tally_contracts import Envelope, Money, parse_message
from tally_contracts.usage import UsageRecorded

MISSING = object()
"""A key left out of the document."""

texts = st.one_of(
    st.text(max_size=8),
    st.text(alphabet="ab\x00\x1f\x7f\x85é٣ ", max_size=4),
    st.sampled_from(["", "x" * 30, "x" * 31, "x" * 50, "x" * 51, "x" * 100, "x" * 101, "x" * 200, "x" * 201]),
)
uuids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: "urn:uuid:" + str(u)),
    st.uuids().map(lambda u: str(u)[:-1] + "g"),
    st.uuids().map(lambda u: " " + str(u)),
    st.integers(),
    st.none(),
)
zones = st.one_of(
    st.sampled_from(
        ["Z", "z", "+00:00", "-00:00", "+01:00", "-13:30", "+23:59", "+24:00", "+0100", "+01", ""]
    ),
    st.tuples(st.sampled_from("+-"), st.integers(0, 30), st.integers(0, 70)).map(
        lambda t: f"{t[0]}{t[1]:02d}:{t[2]:02d}"
    ),
)
instants = st.one_of(
    st.builds(
        lambda moment, zone, sep, fraction: moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + zone,
        st.datetimes(min_value=dt.datetime(1999, 12, 30), max_value=dt.datetime(2100, 1, 2)),
        zones,
        st.sampled_from(["T", "T", "T", " ", "t"]),
        st.one_of(st.just(""), st.integers(0, 9999999).map(lambda n: f".{n}"), st.just(".")),
    ),
    st.sampled_from(
        [
            "2026-11-01",
            "2026-11-01T10:00Z",
            "2026-02-30T10:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T10:00:60Z",
            "1999-12-31T23:00:00-01:00",
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            "2100-01-01T00:30:00+01:00",
            "2000-01-01T00:00:00Z",
            "2099-12-31T23:59:59.999999Z",
            "+2026-11-01T10:00:00Z",
            "２０２６-11-01T10:00:00Z",
        ]
    ),
    st.integers(),
)
quantities = st.one_of(
    st.sampled_from(["-1", "-0.5", "0.1234567890123", "1000000000000000", "1e3", " 1.5"]),
    st.decimals(min_value=0, max_value=Decimal(10) ** 16, allow_nan=False, places=3).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        [
            "1.5",
            " 1.5",
            "1.5 ",
            "-1",
            "-0",
            "+1",
            "1e3",
            "1E-2",
            ".5",
            "5.",
            "007",
            "0.1234567890123",
            "0.123456789012",
            "999999999999999",
            "1000000000000000",
            "١٢",
            "1_000",
            "",
        ]
    ),
    st.integers(-5, 10**16),
    st.floats(allow_nan=False),
    st.booleans(),
)
optional_ids = st.one_of(st.just(MISSING), st.none(), texts, st.integers())
amounts = st.one_of(
    st.just(MISSING),
    st.none(),
    st.fixed_dictionaries({"amount": st.sampled_from(["1.00", "-1.00", "0"]), "currency": st.just("USD")}),
    st.just("1.00"),
)


VALID: dict[str, st.SearchStrategy[Any]] = {
    "id": st.uuids().map(str),
    "type": st.just("UsageRecorded"),
    "version": st.sampled_from([MISSING, 1]),
    "occurred_at": st.builds(
        lambda moment, zone, fraction: moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone,
        st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2098, 12, 31)),
        st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", "-13:30", "+05:45"]),
        st.one_of(st.just(""), st.integers(0, 999999).map(lambda n: f".{n:06d}")),
    ),
    "customer_id": st.one_of(
        st.just("cus-1"), st.none(), st.text(alphabet="abcXYZ09-_é", min_size=1, max_size=5)
    ),
    "correlation_id": st.sampled_from([MISSING, None, "corr-1"]),
    "causation_id": st.sampled_from([MISSING, None, "cause-1"]),
    "service": st.sampled_from(["voice", "data", "x" * 100]),
    "quantity": st.decimals(min_value=0, max_value=10**9, allow_nan=False, places=3).map(str),
    "unit": st.sampled_from(["minute", "GB", "x" * 50]),
    "destination": st.sampled_from([MISSING, None, "44", "x" * 30]),
    "amount": st.sampled_from([MISSING, None]),
    "subscription_id": st.sampled_from([MISSING, None, "sub-1"]),
}
"""Each field as the fast path takes it."""

ODD: dict[str, st.SearchStrategy[Any]] = {
    "id": uuids,
    "type": st.sampled_from(["AddCharge", "usagerecorded", 5, None]),
    "version": st.sampled_from([2, 0, True, 1.0, "1", None]),
    "occurred_at": instants,
    "customer_id": st.one_of(texts, st.integers()),
    "correlation_id": optional_ids,
    "causation_id": optional_ids,
    "service": st.one_of(texts, st.integers(), st.none()),
    "quantity": quantities,
    "unit": st.one_of(texts, st.none()),
    "destination": st.one_of(texts, st.integers()),
    "amount": amounts,
    "subscription_id": optional_ids,
}
"""Each field as it may arrive: boundaries, other forms, wrong types."""

BODY_FIELDS = ("service", "quantity", "unit", "destination", "amount", "subscription_id")


@st.composite
def usage_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A usual usage document with none, one or a few of its fields odd (or left out, or
    one more key), so that both paths are walked often."""
    odd = draw(st.sets(st.sampled_from(sorted(VALID)), max_size=draw(st.sampled_from([1, 1, 1, 3]))))
    value = {name: draw(ODD[name] if name in odd else VALID[name]) for name in VALID}
    data: dict[str, Any] = {name: value[name] for name in BODY_FIELDS}
    document: dict[str, Any] = {name: v for name, v in value.items() if name not in BODY_FIELDS}
    document["data"] = data
    if draw(st.integers(0, 19)) == 0:
        data[draw(st.sampled_from(["extra", "quantity ", "Service"]))] = "x"
    if draw(st.integers(0, 19)) == 0:
        del data[draw(st.sampled_from(sorted(data)))]
    if draw(st.integers(0, 19)) == 0:
        document["data"] = draw(st.sampled_from([[], "x", None]))
    if draw(st.integers(0, 19)) == 0:
        document[draw(st.sampled_from(["extra", "Id", "customer"]))] = "x"
    if draw(st.integers(0, 19)) == 0:
        del document[draw(st.sampled_from(sorted(document)))]
    without: dict[str, Any] = _without_missing(document)
    return without


def _without_missing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_missing(v) for k, v in value.items() if v is not MISSING}
    return value


def encoded(document: dict[str, Any], duplicate: str | None) -> bytes:
    text = json.dumps(document)
    if duplicate and duplicate in document:  # the same key twice: the last one counts
        text = text[:-1] + f", {json.dumps(duplicate)}: {json.dumps(document[duplicate])}" + "}"
    return text.encode()


def contract(raw: bytes) -> Envelope[Any] | str:
    """pydantic's answer: the envelope, or the refusal's text."""
    try:
        return parse_message(raw)
    except (ValidationError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def assert_same(fast: Envelope[Any], expected: Envelope[Any]) -> None:
    assert type(fast) is type(expected)
    assert type(fast.data) is type(expected.data)
    assert fast == expected
    assert repr(fast) == repr(expected)  # Decimal("1.50") vs Decimal("1.5"), zone classes
    assert fast.occurred_at.utcoffset() == expected.occurred_at.utcoffset()
    assert fast.model_fields_set == expected.model_fields_set
    assert fast.data.model_fields_set == expected.data.model_fields_set
    assert fast.model_dump_json() == expected.model_dump_json()
    assert fast.model_dump_json(exclude_unset=True) == expected.model_dump_json(exclude_unset=True)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(usage_documents(), st.sampled_from([None, None, None, "customer_id", "occurred_at", "data"]))
def test_the_fast_path_accepts_only_what_the_contract_accepts_with_the_same_values(
    document: dict[str, Any], duplicate: str | None
) -> None:
    raw = encoded(document, duplicate)
    expected = contract(raw)
    fast = decode_usage(raw)
    event(
        "fast path"
        if fast is not None
        else "pydantic accepts"
        if not isinstance(expected, str)
        else "refused"
    )
    if fast is not None:
        assert not isinstance(expected, str), f"the fast path accepted what pydantic refuses: {expected}"
        assert_same(fast, expected)
    try:
        combined: Envelope[Any] | str = parse_usage_message(raw)
    except (ValidationError, ValueError) as exc:
        combined = f"{type(exc).__name__}: {exc}"
    if isinstance(expected, str):
        assert combined == expected  # refused alike, for the same reason (the DLQ's text)
    else:
        assert not isinstance(combined, str)
        assert_same(combined, expected)


EDGES: dict[str, list[Any]] = {
    "id": [
        "0B8E3F0E-7B1E-4C1E-9A55-2F9B7F6B9C11",
        "0b8e3f0e7b1e4c1e9a552f9b7f6b9c11",
        "0b8e3f0e-7b1e-4c1e-9a55-2f9b7f6b9c1",
        7,
    ],
    "version": [1, 2, 0, True, 1.0, "1", None],
    "occurred_at": [
        "1999-12-31T23:59:59Z",
        "1999-12-31T23:00:00-01:00",
        "2000-01-01T00:00:00Z",
        "2000-01-01T00:30:00+01:00",
        "2099-12-31T23:59:59.999999Z",
        "2099-12-31T23:30:00-01:00",
        "2100-01-01T00:00:00Z",
        "2026-11-01T10:00:00.1234567Z",
        "2026-11-01T10:00:00+24:00",
        "2026-11-01T10:00:00+23:59",
        "2026-11-01T10:00:00-00:00",
        "2026-11-01T10:00:00z",
        "2026-11-01 10:00:00Z",
        "2026-11-01T10:00Z",
        "2026-11-01T10:00:00",
        "2026-02-29T10:00:00Z",
    ],
    "customer_id": ["", "x" * 200, "x" * 201, "a\tb", "a\x85b", "a\x7fb", "é", None, 5],
    "correlation_id": ["", "x" * 200, "x" * 201, "a\nb", None],
    "causation_id": ["", "x" * 201, "a\x9fb"],
    "service": ["", "x" * 100, "x" * 101, None, 5],
    "quantity": [
        "-1",
        "-0",
        "+1",
        "0.123456789012",
        "0.1234567890123",
        "999999999999999",
        "1000000000000000",
        "1e3",
        " 1.5",
        "١٢",
        "NaN",
        "Infinity",
        "",
        1,
        1.5,
        True,
    ],
    "unit": ["", "x" * 50, "x" * 51, None],
    "destination": ["", "x" * 30, "x" * 31, None, 44],
    "amount": [None, {"amount": "1.00", "currency": "USD"}, {"amount": "-1.00", "currency": "USD"}, "1.00"],
    "subscription_id": ["", "x" * 200, "x" * 201, "a\x00b", None],
}
"""One field at a time at its limits and in its other forms, the rest usual."""


def usual_document() -> dict[str, Any]:
    return {
        "id": "0b8e3f0e-7b1e-4c1e-9a55-2f9b7f6b9c11",
        "type": "UsageRecorded",
        "occurred_at": "2026-11-01T10:00:00Z",
        "customer_id": "cus-1",
        "data": {"service": "voice", "quantity": "1.5", "unit": "minute"},
    }


def test_each_field_at_its_limits_is_decided_as_the_contract_decides_it() -> None:
    fast_taken = 0
    for name, values in EDGES.items():
        for value in values:
            document = usual_document()
            (document["data"] if name in BODY_FIELDS else document)[name] = value
            raw = json.dumps(document).encode()
            expected = contract(raw)
            fast = decode_usage(raw)
            if fast is not None:
                fast_taken += 1
                assert not isinstance(expected, str), (
                    f"{name}={value!r}: fast path accepted; pydantic: {expected}"
                )
                assert_same(fast, expected)
    assert fast_taken >= 15  # the limits that are inside are taken fast


def test_raw_bytes_that_are_not_a_document_are_refused_as_the_contract_refuses_them() -> None:
    for raw in [b"", b"{", b"\xff\xfe", b"[]", b"null", b'{"id": 1}' + b" " * 1_000_001, b'{"a": "\\u0000"}']:
        assert decode_usage(raw) is None
        try:
            parse_usage_message(raw)
        except (ValidationError, ValueError) as exc:
            assert f"{type(exc).__name__}: {exc}" == contract(raw)
        else:
            raise AssertionError(f"{raw[:20]!r} accepted")


@given(
    quantity=st.decimals(min_value=0, max_value=Decimal(10) ** 15 - 1, allow_nan=False, places=4),
    destination=st.one_of(st.none(), st.sampled_from(["44", "4420", "1"])),
    seconds=st.integers(0, 365 * 86400),
    subscription=st.one_of(st.none(), st.just("sub-1")),
    amount=st.one_of(st.none(), st.just(Money.of("1.25", "USD"))),
)
def test_usage_as_the_services_write_it_takes_the_fast_path(
    quantity: Decimal, destination: str | None, seconds: int, subscription: str | None, amount: Money | None
) -> None:
    """What `Envelope.to_json` writes (the CLI, the benchmarks, upstreams using the contracts)
    is decoded without pydantic, except a pre-rated amount (rare: left to pydantic)."""
    envelope = Envelope.new(
        UsageRecorded(
            service="voice",
            quantity=quantity,
            unit="minute",
            destination=destination,
            subscription_id=subscription,
            amount=amount,
        ),
        customer_id="cus-1",
        occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds),
        message_id=uuid.uuid4(),
    )
    raw = envelope.to_json()
    fast = decode_usage(raw)
    if amount is not None:
        assert fast is None
        return
    assert fast is not None
    assert_same(fast, parse_message(raw))
    assert fast == envelope
