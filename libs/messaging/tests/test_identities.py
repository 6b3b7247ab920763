"""The ACL table (deploy/local/acls.tsv) against the services' code and the docs' copy.

What the broker really grants, and that it refuses the rest, is tested on the real broker in
tests/e2e/test_identities.py."""

import importlib
from pathlib import Path

import pytest

from tally_contracts.read_apis import SERVICES
from tally_contracts.topics import ALL_TOPICS, dlq
from tally_messaging import Service
from tally_messaging.identities import (
    EVERY_TOPIC,
    AclRule,
    differences,
    markdown_table,
    read_table,
)

ACL_TABLE = Path(__file__).resolve().parents[3] / "deploy" / "local" / "acls.tsv"
ACL_DOC = ACL_TABLE.with_suffix(".md")
RULES = read_table(ACL_TABLE)


def build_service(name: str) -> Service:
    service: Service = importlib.import_module(f"{name}.app").build()
    return service


def allowed(principal: str, operation: str, resource: str = "topic") -> set[str]:
    return {
        r.name
        for r in RULES
        if r.principal == principal and r.operation == operation and r.resource == resource
    }


def test_docs_table_is_generated_from_the_acl_table() -> None:
    assert ACL_DOC.read_text() == markdown_table(RULES), (
        "run: uv run python -m tally_messaging.identities table"
        " --table deploy/local/acls.tsv --write deploy/local/acls.md"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_a_service_reads_what_it_consumes_and_writes_its_events_and_their_dead_letters(name: str) -> None:
    service = build_service(name)

    assert allowed(name, "READ") == set(service.routes)
    assert allowed(name, "WRITE") == {service.events_topic, *(dlq(t) for t in service.routes)}
    assert [(r.pattern, r.name) for r in RULES if r.principal == name and r.resource == "group"] == [
        ("prefixed", f"{name}.")
    ]


def test_only_its_owner_may_write_an_events_topic() -> None:
    for topic in (t for t in ALL_TOPICS if t.endswith(".events")):
        writers = {r.principal for r in RULES if r.operation == "WRITE" and r.name == topic}
        assert writers == {topic.removesuffix(".events")}, topic
    assert not [
        r for r in RULES if r.operation == "WRITE" and (r.pattern != "literal" or r.name == EVERY_TOPIC)
    ]


def test_upstream_producers_write_usage_only_and_operators_commands_and_usage() -> None:
    assert allowed("usage-producer", "WRITE") == {"usage"}
    assert allowed("usage-producer", "READ") == set()
    assert allowed("ops", "WRITE") == {"usage", *(t for t in ALL_TOPICS if t.endswith(".commands"))}
    assert allowed("ops", "READ") == {EVERY_TOPIC}


def test_a_sessions_rules_name_its_own_topics_and_groups() -> None:
    rule = AclRule("rules", "READ", "group", "prefixed", "rules.")

    assert rule.for_prefix("t1.").name == "t1.rules."
    assert AclRule("ops", "READ", "topic", "literal", EVERY_TOPIC).for_prefix("t1.").name == EVERY_TOPIC


def test_differences_name_what_is_missing_and_what_is_extra_and_ignore_other_names() -> None:
    table = [AclRule("rules", "READ", "topic", "literal", "rules.commands")]
    extra = AclRule("ops", "READ", "topic", "literal", "rules.commands")
    session = AclRule("rules", "READ", "topic", "literal", "t1.rules.commands")

    assert differences(table, [*table, session]) == []
    assert differences(table, [extra]) == [
        f"granted but not in the table: {extra}",
        f"in the table but not granted: {table[0]}",
    ]


def test_a_malformed_row_is_refused_with_its_line(tmp_path: Path) -> None:
    table = tmp_path / "acls.tsv"
    table.write_text("# comment\nrules\tDELETE\ttopic\tliteral\trules.events\n")

    with pytest.raises(ValueError, match=r"acls.tsv:2: 'DELETE' is not one of"):
        read_table(table)
