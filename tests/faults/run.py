"""The fault run: `python -m tests.faults.run --seed N [--customers C] [--commands K]`.

Runs the seed's workload once without faults and once with the seed's faults (each on its own
topic prefix and databases, the services as separate processes on the shared Kafka and
PostgreSQL), rebuilds a fresh credits database from the faulty run's topics, checks the
invariants and prints a summary ending in `N violations`. Exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tally_testing import Infra

from . import invariants
from .faults import BROKER_KILLS, HOSTILE_KINDS, INSTANCE_KILLS, SKIPPED, Cluster, FaultPlan, plan
from .infra import PrivateInfra
from .runner import RunResult, replay_credits, run_workload
from .stack import Record, infra_from_env
from .workload import Workload, generate


@dataclass
class Report:
    seed: int
    workload: Workload
    plan: FaultPlan
    faulty: RunResult
    baseline: RunResult | None
    results: list[invariants.Verdict]
    seconds: float
    private: bool = False

    @property
    def violations(self) -> int:
        return sum(len(v.all_violations) for v in self.results)

    def summary(self, max_lines: int = 15) -> str:
        out = [
            "== Tally fault run ==",
            f"seed: {self.seed}",
            f"customers: {len(self.workload.customers)} (currencies "
            f"{', '.join(sorted(set(self.workload.customers.values())))})",
            f"steps: {len(self.workload.steps)}"
            + (
                f" (STOPPED: not idle after step {len(self.faulty.step_ends_ms)})"
                if self.faulty.errors
                else ""
            ),
            f"commands sent: {sum(1 for m in self.faulty.sent if m.is_command)} "
            f"(+ {sum(1 for m in self.faulty.sent if not m.is_command)} usage events; "
            f"{len(self.faulty.sent)} messages; planned {len(self.workload.messages)})",
            "workload: " + ", ".join(f"{k} {v}" for k, v in self.workload.counts().items()),
            f"hostile messages: {len(self.faulty.hostile)} of {len(_count(h.kind for h in self.faulty.hostile))}"
            " kinds ("
            + ", ".join(f"{k} {v}" for k, v in _count(h.kind for h in self.faulty.hostile).items())
            + ")",
            f"duplicates re-published: {self.faulty.duplicates_sent}",
            "faults injected: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.faulty.injected.items())) or "none"),
            "faults planned: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.plan.planned().items()))
            + " (a crash point that was never reached, or a delay of a topic with nothing to send,"
            " is planned but not injected)",
        ]
        if self.plan.cluster is not None:
            cluster = self.plan.cluster
            injected = self.faulty.injected
            out.append(
                f"cluster: {cluster.brokers} brokers (replication factor 3, min.insync.replicas 2), "
                f"{cluster.instances} instances per service, each bootstrapping from all brokers"
            )
            out.append(
                f"broker kills (SIGKILL): {sum(injected.get(k, 0) for k in BROKER_KILLS)} "
                f"(kafka_kill {injected.get('kafka_kill', 0)}, leader_kill {injected.get('leader_kill', 0)}; "
                f"minimum {cluster.broker_kills}); graceful broker restarts {injected.get('kafka_restart', 0)}"
            )
            out.append(
                f"instance kills (SIGKILL): {sum(injected.get(k, 0) for k in INSTANCE_KILLS)} "
                f"(kill {injected.get('kill', 0)}, rebalance_kill {injected.get('rebalance_kill', 0)}; "
                f"minimum {cluster.instance_kills}); besides: crash points {injected.get('crash_point', 0)}, "
                f"pauses past the session timeout {injected.get('pause', 0)}"
            )
        if not self.private:
            out.append(
                "skipped: "
                + ", ".join(f"{k}" for k in SKIPPED)
                + " (shared broker/database; use --private-infra)"
            )
        if self.baseline is None:
            out.append("skipped: fault-free comparison")
        out.append(f"invariants checked: {len(self.results)}")
        for verdict in self.results:
            found = verdict.all_violations
            out.append(
                f"  [{'ok' if not found else 'FAIL'}] {verdict.name}: {len(found)} violation(s)"
                f" ({verdict.checked} {verdict.unit} checked)"
            )
            for line in found[:max_lines]:
                out.append(f"      - {line}")
            if len(found) > max_lines:
                out.append(f"      ... and {len(found) - max_lines} more")
        out.append(f"time: {self.seconds:.0f}s")
        out.append(f"{self.violations} violations")
        return "\n".join(out)


def dump(report: Report, path: Path) -> None:
    """Everything the runs left behind, as JSON, to investigate a failing seed."""

    def snapshot(result: RunResult | None) -> Any:
        if result is None or result.snapshot is None:
            return None
        snap = result.snapshot
        return {
            "records": {
                topic: [
                    {
                        "partition": r.partition,
                        "offset": r.offset,
                        "timestamp": r.timestamp,
                        "value": _value(r),
                    }
                    for r in records
                ]
                for topic, records in snap.records.items()
            },
            "invoicing": snap.invoicing,
            "credit_invoices": snap.credit_invoices,
            "balances": snap.balances,
            "ledger": snap.ledger,
            "payments": snap.payments,
            "health": snap.health,
            "fault_log": result.fault_log,
            "sent": [
                {
                    "topic": m.topic,
                    "id": m.id,
                    "action": m.action,
                    "type": m.envelope.type,
                    "customer": m.envelope.customer_id,
                }
                for m in result.sent
            ],
        }

    body = {
        "seed": report.seed,
        "results": [
            {"name": v.name, "checked": v.checked, "unit": v.unit, "violations": v.all_violations}
            for v in report.results
        ],
        "faulty": snapshot(report.faulty),
        "baseline": snapshot(report.baseline),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1, default=str))


def _value(record: Record) -> Any:
    if len(record.value) < 100_000 and record.json() is not None:
        return record.json()
    return record.value[:2000].decode(errors="replace") + f"... ({len(record.value)} bytes)"


def _count(items: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in items:
        found[item] = found.get(item, 0) + 1
    return dict(sorted(found.items()))


async def run(
    seed: int,
    customers: int,
    commands: int,
    *,
    baseline: bool = True,
    replay: bool = True,
    pause_seconds: float = 14.0,
    intensity: float = 1.0,
    private_infra: bool = False,
    private_ports: tuple[int, int] = (19092, 15432),
    exclude_hostile: frozenset[str] = frozenset(),
    infra: Infra | None = None,
    races: bool = True,
    usage_per_command: float = 5.0,
    cluster: Cluster | None = None,
) -> Report:
    """One seeded run; always a report, whatever a fault did to the run. `cluster`: three
    brokers of the run's own and several instances of each service (implies private infra)."""
    started = time.monotonic()
    if cluster is not None:
        private_infra = True
    brokers = cluster.brokers if cluster is not None else 1
    private = PrivateInfra(*private_ports, brokers=brokers) if private_infra else None
    if private is not None:
        await private.start()
    try:
        return await _run(
            seed,
            customers,
            commands,
            baseline,
            replay,
            pause_seconds,
            intensity,
            private,
            started,
            infra,
            exclude_hostile,
            races,
            usage_per_command,
            cluster,
        )
    finally:
        if private is not None:
            with contextlib.suppress(Exception):
                logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"tally-faults-seed{seed}-logs"
                for kept in private.keep_logs(logs):
                    print(f"  kept {kept}", flush=True)
            with contextlib.suppress(Exception):
                await private.wipe()


async def _run(
    seed: int,
    customers: int,
    commands: int,
    baseline: bool,
    replay: bool,
    pause_seconds: float,
    intensity: float,
    private: PrivateInfra | None,
    started: float,
    shared: Infra | None,
    exclude_hostile: frozenset[str],
    races: bool,
    usage_per_command: float,
    cluster: Cluster | None,
) -> Report:
    infra = private.infra if private is not None else (shared or infra_from_env())
    workload = generate(seed, customers, commands, races, usage_per_command)
    fault_plan = plan(
        workload,
        pause_seconds=pause_seconds,
        intensity=intensity,
        restarts=private is not None,
        exclude_hostile=exclude_hostile,
        cluster=cluster,
    )
    instances = cluster.instances if cluster is not None else 1
    print(
        f"seed {seed}: {sum(1 for m in workload.messages if m.is_command)} commands, "
        f"{sum(1 for m in workload.messages if not m.is_command)} usage events in {len(workload.steps)} steps; "
        f"planned faults {fault_plan.planned()}",
        flush=True,
    )
    base: RunResult | None = None
    if baseline:
        base, stack = await run_workload(infra, workload, None, "fault-free", instances=instances)
        with contextlib.suppress(Exception):
            await stack.stop(drop=True)
        print(f"  fault-free run: {base.seconds:.0f}s", flush=True)
    faulty, stack = await run_workload(
        infra,
        workload,
        fault_plan,
        "faulty",
        private=private,
        instances=instances,
    )
    print(f"  faulty run: {faulty.seconds:.0f}s", flush=True)
    rebuilt: dict[str, list[dict[str, Any]]] | None = None
    replay_errors: list[str] = []
    try:
        if replay and faulty.snapshot is not None:
            rebuilt, replay_errors = await replay_credits(infra, stack, faulty, workload)
    except Exception as exc:
        replay_errors.append(f"replay aborted: {type(exc).__name__}: {str(exc)[:1500]}")
    finally:
        with contextlib.suppress(Exception):
            await stack.stop(drop=True)
    results = invariants.checks(
        workload, faulty, base, rebuilt, fault_plan, private is not None, exclude_hostile
    )
    if replay:
        results.append(
            invariants.Verdict(
                "credits rebuilt from the topics: idle after every step", replay_errors, 1, "replays"
            )
        )
    else:
        results.append(invariants.Verdict("credits rebuilt from the topics (skipped)", may_be_empty=True))
    return Report(
        seed,
        workload,
        fault_plan,
        faulty,
        base,
        results,
        time.monotonic() - started,
        private is not None,
    )


def _not_a_node_connect_failure(record: logging.LogRecord) -> bool:
    return not record.msg.startswith("Unable connect to node") if isinstance(record.msg, str) else True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--commands", type=int, default=300, help="about how many commands to send")
    parser.add_argument(
        "--usage-per-command",
        type=float,
        default=5.0,
        help="usage events per command (the steady stream that flows while faults are injected)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the fault-free comparison run")
    parser.add_argument("--no-replay", action="store_true", help="skip rebuilding credits from the topics")
    parser.add_argument(
        "--pause-seconds", type=float, default=14.0, help="SIGSTOP length (> session timeout)"
    )
    parser.add_argument("--intensity", type=float, default=1.0, help="scales the number of extra faults")
    parser.add_argument(
        "--private-infra",
        action="store_true",
        help="run on a Kafka and a PostgreSQL of the run's own (ports 19092/15432) and restart them",
    )
    parser.add_argument(
        "--private-ports",
        default=None,
        help="KAFKA,POSTGRES ports of the private infrastructure (the controller takes KAFKA+1; a "
        "cluster's node i takes KAFKA+2(i-1) and the port after it): two runs at once need two "
        "pairs (default 19092,15432; with --cluster 29092,25432)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="three brokers of the run's own (replication factor 3, min.insync.replicas 2) and "
        "--instances processes per service; adds broker SIGKILLs (one node, the leader of a usage "
        "partition) and instance kills inside a rebalance (implies --private-infra)",
    )
    parser.add_argument("--instances", type=int, default=2, help="processes per service with --cluster")
    parser.add_argument("--min-broker-kills", type=int, default=5, help="with --cluster: planned at least")
    parser.add_argument("--min-instance-kills", type=int, default=10, help="with --cluster: planned at least")
    parser.add_argument(
        "--exclude-hostile",
        default="",
        help=f"comma-separated hostile kinds not to send (e.g. a known bug); kinds: {', '.join(HOSTILE_KINDS)}",
    )
    parser.add_argument(
        "--no-races", action="store_true", help="no payment racing the invoice it names (charge_and_pay)"
    )
    parser.add_argument("--dump", help="where to write the run's details (JSON)")
    args = parser.parse_args(argv)
    # The harness's own clients retry through broker restarts; aiokafka's warnings about each
    # attempt, and its error for each failed connection to a node that is down (a line per
    # request, hundreds while a cluster node restarts), would bury the run's own log.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("aiokafka.client").addFilter(_not_a_node_connect_failure)
    cluster = (
        Cluster(
            instances=args.instances,
            broker_kills=args.min_broker_kills,
            instance_kills=args.min_instance_kills,
        )
        if args.cluster
        else None
    )
    ports = args.private_ports or ("29092,25432" if cluster is not None else "19092,15432")
    report = asyncio.run(
        run(
            args.seed,
            args.customers,
            args.commands,
            baseline=not args.no_baseline,
            replay=not args.no_replay,
            pause_seconds=args.pause_seconds,
            intensity=args.intensity,
            private_infra=args.private_infra,
            private_ports=_ports(ports),
            exclude_hostile=frozenset(k for k in args.exclude_hostile.split(",") if k),
            races=not args.no_races,
            usage_per_command=args.usage_per_command,
            cluster=cluster,
        )
    )
    path = Path(args.dump or Path(os.environ.get("TMPDIR", "/tmp")) / f"tally-faults-seed{args.seed}.json")
    dump(report, path)
    print(report.summary(), flush=True)
    print(f"details: {path}", flush=True)
    return 1 if report.violations else 0


def _ports(text: str) -> tuple[int, int]:
    kafka, _, postgres = text.partition(",")
    return int(kafka), int(postgres)


if __name__ == "__main__":
    sys.exit(main())
