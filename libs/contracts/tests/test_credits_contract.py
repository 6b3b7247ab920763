"""The credits commands' optional fields (issue 18): additive, so a v1 body without them
still parses and means what it meant; bad values are refused with the reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tally_contracts import Money
from tally_contracts.credits import ApplyCredits, CreditScope, GrantCredit

GRANT = {
    "grant_id": "g-1",
    "kind": "promotional",
    "amount": {"amount": "10.00", "currency": "USD"},
    "source": "other",
}


def test_an_apply_credits_without_fields_still_means_every_open_invoice() -> None:
    command = ApplyCredits.model_validate({})

    assert (command.invoice_id, command.amount) == (None, None)


def test_apply_credits_names_an_invoice_and_an_amount() -> None:
    command = ApplyCredits.model_validate(
        {"invoice_id": "inv-1", "amount": {"amount": "20.00", "currency": "USD"}}
    )

    assert (command.invoice_id, command.amount) == ("inv-1", Money.of("20.00", "USD"))


def test_a_grant_without_priority_or_scope_still_parses() -> None:
    grant = GrantCredit.model_validate(GRANT)

    assert (grant.priority, grant.scope) == (None, None)


@pytest.mark.parametrize("priority", [1, 50])
def test_priorities_run_from_1_to_50(priority: int) -> None:
    assert GrantCredit.model_validate({**GRANT, "priority": priority}).priority == priority


@pytest.mark.parametrize("priority", [0, 51, -1])
def test_a_priority_outside_1_to_50_is_refused(priority: int) -> None:
    with pytest.raises(ValidationError, match="priority"):
        GrantCredit.model_validate({**GRANT, "priority": priority})


def test_a_scope_names_a_line_kind_a_service_or_both() -> None:
    assert CreditScope(service="voice").line_kind is None
    assert CreditScope(line_kind="subscription").service is None
    with pytest.raises(ValidationError, match="a scope names a line_kind, a service or both"):
        CreditScope()


def test_adjustments_are_no_scope() -> None:
    with pytest.raises(ValidationError, match="line_kind"):
        CreditScope.model_validate({"line_kind": "adjustment"})
