"""mypy checks that a handler is registered for the message type it takes.

The snippets are checked by mypy itself (mypy.api, the repository's strict settings): a
registration for another type, or for more types than the handler takes, is an error; the
right ones pass. No handler needs to cast `message.data`."""

from pathlib import Path

import mypy.api
import pytest

REPO = Path(__file__).resolve().parents[3]

HEADER = """
from tally_contracts import Envelope
from tally_contracts.invoicing import InvoiceClosed, InvoiceVoided
from tally_contracts.rules import AssignRuleSet, PutRuleSet
from tally_contracts.usage import UsageRecorded
from tally_messaging import Delivery, Service, Transaction

service = Service("typing", events_topic="typing.events", default_http_port=8080)


async def put(message: Envelope[PutRuleSet], tx: Transaction) -> None:
    name: str = message.data.name  # a PutRuleSet's field, no cast


async def closed_or_voided(message: Envelope[InvoiceClosed | InvoiceVoided], tx: Transaction) -> None:
    invoice_id: str = message.data.invoice_id  # both have it


async def record_usage(batch: list[Delivery[UsageRecorded]], tx: Transaction) -> None:
    units: list[str] = [d.envelope.data.unit for d in batch]
"""

RIGHT = """
service.handles("rules.commands", PutRuleSet)(put)
service.handles("invoicing.events", InvoiceClosed, InvoiceVoided)(closed_or_voided)
service.handles("invoicing.events", InvoiceVoided, InvoiceClosed)(closed_or_voided)
service.handles_batch("usage", UsageRecorded)(record_usage)
"""

WRONG = {
    "another type": 'service.handles("rules.commands", AssignRuleSet)(put)',
    "a type too many": 'service.handles("rules.commands", PutRuleSet, AssignRuleSet)(put)',
    "a type the union lacks": 'service.handles("invoicing.events", InvoiceClosed, PutRuleSet)(closed_or_voided)',
    "one of two types": 'service.handles("invoicing.events", InvoiceClosed)(closed_or_voided)',
    "a batch of another type": 'service.handles_batch("rules.commands", PutRuleSet)(record_usage)',
}


def mypy_errors(tmp_path: Path, snippets: dict[str, str]) -> dict[str, list[str]]:
    """mypy's error lines for each snippet (checked together: one mypy run)."""
    files = {}
    for name, code in snippets.items():
        path = tmp_path / f"{name.replace(' ', '_')}.py"
        path.write_text(HEADER + code + "\n")
        files[name] = path
    stdout, stderr, _ = mypy.api.run(
        ["--config-file", str(REPO / "pyproject.toml"), "--no-incremental", *map(str, files.values())]
    )
    assert not stderr, stderr
    return {
        name: [line for line in stdout.splitlines() if line.startswith(str(path)) and ": error:" in line]
        for name, path in files.items()
    }


@pytest.fixture(scope="module")
def errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return mypy_errors(tmp_path_factory.mktemp("typing"), {"right": RIGHT, **WRONG})


def test_a_handler_registered_for_the_types_it_takes_passes(errors: dict[str, list[str]]) -> None:
    assert errors["right"] == []


@pytest.mark.parametrize("case", WRONG)
def test_a_handler_registered_for_other_types_is_a_mypy_error(
    case: str, errors: dict[str, list[str]]
) -> None:
    assert len(errors[case]) == 1, errors[case]
    assert "incompatible type" in errors[case][0], errors[case]
