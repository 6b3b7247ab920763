"""Kafka identities: the ACL table (deploy/local/acls.tsv) granted on a broker, read back,
and rendered for the docs.

`python -m tally_messaging.identities grant|check|table --table <acls.tsv>` (as `admin`:
TALLY_KAFKA_BOOTSTRAP and TALLY_KAFKA_CREDENTIALS_DIR or TALLY_KAFKA_USERNAME/PASSWORD);
`table --write <acls.md>` writes the docs' rendering. aiokafka's admin client
has no ACL calls, so the CreateAcls / DescribeAcls / DeleteAcls requests (version 1: the
first with prefixed patterns) are sent with its protocol classes.

A test session has its own topic prefix: `grant(..., prefix=p)` gives the same rules on its
topics (`p` + each name; a group pattern `<service>.` becomes `p` + `<service>.`, the group
prefix tests use being the topic prefix), and `revoke` removes them again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

from tally_messaging.kafka_security import KafkaCredentials, client_options, kafka_credentials
from tally_messaging.settings import ServiceSettings
from tally_messaging.topic_admin import ensure_topics

ADMIN = "admin"
"""The super user (`super.users`): sets up, and is in no ACL."""
EVERY_TOPIC = "*"

# Kafka's protocol codes (org.apache.kafka.common.acl / resource).
_ANY = 1
_RESOURCE = {"topic": 2, "group": 3}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"READ": 3, "WRITE": 4}
_ALLOW = 3
_CODES = {
    "resource": {v: k for k, v in _RESOURCE.items()},
    "pattern": {v: k for k, v in _PATTERN.items()},
    "operation": {v: k for k, v in _OPERATION.items()},
}


class UnknownAcl(ValueError):
    """The broker holds an ACL this module cannot express (a DENY, another operation...)."""


@dataclass(frozen=True, order=True)
class AclRule:
    """`principal` may `operation` the `resource` (topic|group) named `name` (`pattern`:
    literal, or prefixed: every name starting with it; the topic `*` is every topic)."""

    principal: str
    operation: str
    resource: str
    pattern: str
    name: str

    def __post_init__(self) -> None:
        for value, allowed in (
            (self.operation, _OPERATION),
            (self.resource, _RESOURCE),
            (self.pattern, _PATTERN),
        ):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {sorted(allowed)} in {self}")

    def for_prefix(self, prefix: str) -> AclRule:
        """The rule for a test session's topics and groups, all named `prefix` + name."""
        if self.name == EVERY_TOPIC:
            return self
        return replace(self, name=prefix + self.name)


def read_table(path: Path) -> list[AclRule]:
    """The rules of a tab-separated table (lines starting with `#` are comments)."""
    rules = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise ValueError(f"{path}:{number}: expected 5 tab-separated fields, got {len(fields)}")
        try:
            rules.append(AclRule(*fields))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
    return rules


def markdown_table(rules: Iterable[AclRule]) -> str:
    """The table for the docs: one row per principal and what it may do."""
    verbs = {("topic", "READ"): "read", ("topic", "WRITE"): "write", ("group", "READ"): "consume in groups"}
    rows: dict[tuple[str, str], list[str]] = {}
    for rule in sorted(rules):
        if rule.name == EVERY_TOPIC:
            name = "every topic"
        elif rule.pattern == "prefixed":
            name = f"`{rule.name}*`"
        else:
            name = f"`{rule.name}`"
        rows.setdefault((rule.principal, verbs[rule.resource, rule.operation]), []).append(name)
    lines = [
        "<!-- generated from deploy/local/acls.tsv by `python -m tally_messaging.identities table`;"
        " a test fails when they differ -->",
        "| Principal | May | On |",
        "|---|---|---|",
    ]
    for (principal, verb), names in rows.items():
        lines.append(f"| `{principal}` | {verb} | {', '.join(names)} |")
    return "\n".join(lines) + "\n"


async def _send(admin: AIOKafkaAdminClient, request: Any) -> Any:
    return await admin._send_request(request)


@contextlib.asynccontextmanager
async def _admin(bootstrap: str, credentials: KafkaCredentials | None) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client, started, closed on the way out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(credentials))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


def _binding(rule: AclRule) -> tuple[int, str, int, str, str, int, int]:
    return (
        _RESOURCE[rule.resource],
        rule.name,
        _PATTERN[rule.pattern],
        f"User:{rule.principal}",
        "*",
        _OPERATION[rule.operation],
        _ALLOW,
    )


async def grant(
    bootstrap: str, credentials: KafkaCredentials | None, rules: Iterable[AclRule], prefix: str = ""
) -> None:
    """Create each rule (for `prefix`'s topics); granting what exists already is a no-op."""
    async with _admin(bootstrap, credentials) as admin:
        for rule in rules:
            response = await _send(admin, CreateAclsRequest(*_binding(rule.for_prefix(prefix))))
            for code, message in response.creation_responses:
                if code != 0:
                    raise for_code(code)(f"granting {rule}: {message}")


async def revoke(
    bootstrap: str, credentials: KafkaCredentials | None, rules: Iterable[AclRule], prefix: str = ""
) -> None:
    """Delete each rule (for `prefix`'s topics); the shared `*` rules stay."""
    async with _admin(bootstrap, credentials) as admin:
        for rule in rules:
            if rule.name == EVERY_TOPIC:
                continue
            response = await _send(admin, DeleteAclsRequest(*_binding(rule.for_prefix(prefix))))
            for code, message, _ in response.filter_responses:
                if code != 0:
                    raise for_code(code)(f"revoking {rule}: {message}")


async def granted(bootstrap: str, credentials: KafkaCredentials | None) -> set[AclRule]:
    """Every ACL the broker holds, as rules (UnknownAcl for one this module cannot express)."""
    async with _admin(bootstrap, credentials) as admin:
        response = await _send(admin, DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY))
    if response.error_code != 0:
        raise for_code(response.error_code)(f"describing ACLs: {response.error_message}")
    rules = set()
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            try:
                rules.add(
                    AclRule(
                        principal=principal.removeprefix("User:"),
                        operation=_CODES["operation"][operation],
                        resource=_CODES["resource"][resource_type],
                        pattern=_CODES["pattern"][pattern],
                        name=name,
                    )
                )
            except (KeyError, ValueError):
                raise UnknownAcl(
                    f"{principal} {operation=} {permission=} {host=} on {resource_type=} {name} {pattern=}"
                ) from None
            if permission != _ALLOW or host != "*":
                raise UnknownAcl(f"{principal} on {name}: {permission=} {host=}")
    return rules


def differences(table: Iterable[AclRule], broker: Iterable[AclRule]) -> list[str]:
    """What the broker grants that the table does not and the other way round, for the
    table's own resource names (a test session's prefixed grants are not the table's)."""
    wanted = set(table)
    names = {(r.resource, r.pattern, r.name) for r in wanted}
    held = {r for r in broker if (r.resource, r.pattern, r.name) in names}
    return [f"granted but not in the table: {r}" for r in sorted(held - wanted)] + [
        f"in the table but not granted: {r}" for r in sorted(wanted - held)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tally_messaging.identities", description=__doc__)
    parser.add_argument("command", choices=["grant", "check", "table"])
    parser.add_argument("--table", type=Path, required=True, help="the ACL table (acls.tsv)")
    parser.add_argument("--principal", default=ADMIN, help="who to connect as (the super user)")
    parser.add_argument("--write", type=Path, metavar="DOC", help="table: write it to DOC (acls.md)")
    args = parser.parse_args(argv)
    rules = read_table(args.table)
    if args.command == "table":
        if args.write is not None:
            args.write.write_text(markdown_table(rules))
        else:
            sys.stdout.write(markdown_table(rules))
        return 0
    settings = ServiceSettings()
    credentials = kafka_credentials(settings, args.principal)
    if credentials is None:
        print(f"no credentials for {args.principal}: set TALLY_KAFKA_CREDENTIALS_DIR", file=sys.stderr)
        return 2
    bootstrap = settings.kafka_bootstrap
    if args.command == "grant":
        asyncio.run(ensure_topics(bootstrap, credentials=credentials))
        asyncio.run(grant(bootstrap, credentials, rules))
        print(f"kafka: topics made and {len(rules)} ACLs from {args.table} granted on {bootstrap}")
        return 0
    problems = differences(rules, asyncio.run(granted(bootstrap, credentials)))
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
