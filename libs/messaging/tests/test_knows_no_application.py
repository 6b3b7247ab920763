"""The runtime knows no application: nothing in tally_messaging's own modules imports or
names one of Tally's services, a message type of the contracts, or a service's port.

The runtime's own answers, CommandRejected and CommandCompleted (`tally_contracts.base`),
are the runtime's protocol, not an application's messages: it may name those.

The services pass what the runtime needs (their name, events topic, default port and the
types they handle) when they build their `Service`; message keys are declared with the
contracts. The test fixtures live in their own package, `tally_testing` (libs/testing).
"""

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tally_messaging
from tally_contracts import MessageData
from tally_contracts.read_apis import SERVICES

RUNTIME = Path(tally_messaging.__file__).parent
MODULES = sorted(RUNTIME.rglob("*.py"))
APPLICATION_TYPES = sorted(
    n for n, t in MessageData.registry.items() if t.__module__ != "tally_contracts.base"
)
PORT = re.compile(r"(?<!\d)808\d(?!\d)")


@dataclass
class Names:
    """What a module's code names. Documentation (a string standing alone as a statement)
    is not code: "the read API's rules" names no service."""

    modules: set[str] = field(default_factory=set)
    """Each dotted part of every module imported."""
    identifiers: set[str] = field(default_factory=set)
    """Variables, attributes and imported names (a variable `rules` is not the service)."""
    words: set[str] = field(default_factory=set)
    """The words of the string literals."""


def names_in(source: str) -> Names:
    tree = ast.parse(source)
    documentation = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    found = Names()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.modules.update(part for alias in node.names for part in alias.name.split("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.modules.update(node.module.split("."))
            found.identifiers.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Name):
            found.identifiers.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.identifiers.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documentation:
            found.words.update(re.findall(r"[A-Za-z_]+", node.value))
    return found


def problems(source: str) -> list[str]:
    names = names_in(source)
    found = [f"names the service {s!r}" for s in SERVICES if s in names.modules | names.words]
    found += [
        f"names the message type {t!r}"
        for t in APPLICATION_TYPES
        if t in names.modules | names.identifiers | names.words
    ]
    found += [f"names the port {p}" for p in PORT.findall(source)]
    found += [f"imports {m!r}" for m in ("console", "tally_cli") if m in names.modules]
    return found


def test_the_check_sees_a_service_a_message_type_and_a_port() -> None:
    source = (
        "from tally_contracts.rules import PutRuleSet\n"
        'KEYS = {"RunBilling": "bill-run"}\n'
        'PORTS = {"invoicing": 8081}\n'
    )

    assert problems(source) == [
        "names the service 'invoicing'",
        "names the service 'rules'",
        "names the message type 'PutRuleSet'",
        "names the message type 'RunBilling'",
        "names the port 8081",
    ]


def test_the_check_passes_the_generic_words_the_runtime_uses() -> None:
    source = (
        "from tally_contracts import CommandCompleted, CommandRejected, Envelope, MessageData\n"
        "from tally_contracts.topics import TOPIC_MESSAGES, dlq\n"
        "def key(envelope): return envelope.customer_id or 'x'\n"
    )

    assert problems(source) == []


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(RUNTIME)))
def test_a_runtime_module_names_no_service_message_type_or_port(module: Path) -> None:
    assert problems(module.read_text()) == []
