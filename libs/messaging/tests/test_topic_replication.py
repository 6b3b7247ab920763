"""Topics are replicated as the cluster allows (issue 20): replication factor min(3, brokers)
and `min.insync.replicas=2` at three, so one broker of three may be lost with no acknowledged
message lost and writes going on.

The decision is a pure function, tested always. On the shared single broker a topic gets one
replica and the broker's default ISR. On a three-broker cluster (deploy/local/kafka.sh with
TALLY_KAFKA_BROKERS=3) a topic gets three replicas and `min.insync.replicas=2`: that test runs
when TALLY_TEST_KAFKA_CLUSTER_BOOTSTRAP names the cluster (its admin password is read from the
folder kafka.sh made for the cluster, .local/kafka-cluster-<first port>), and is skipped otherwise.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from hypothesis import given
from hypothesis import strategies as st

from tally_contracts import topics
from tally_messaging.kafka_security import KafkaCredentials, client_options, credentials_in
from tally_messaging.topic_admin import create_missing_topics, replication_for
from tally_testing import REPO, Infra


@given(st.integers(min_value=1, max_value=50))
def test_replication_is_three_at_most_and_min_isr_two_only_with_three(brokers: int) -> None:
    factor, configs = replication_for(brokers)
    assert factor == min(3, brokers)
    if factor == 3:
        assert configs == {"min.insync.replicas": "2"}
    else:  # two of two in sync would stop every write while one broker restarts
        assert "min.insync.replicas" not in configs


def test_a_cluster_without_brokers_is_refused() -> None:
    with pytest.raises(ValueError, match="reports 0 brokers"):
        replication_for(0)


async def _placement(
    bootstrap: str, credentials: KafkaCredentials | None, topic: str
) -> tuple[set[int], str]:
    """Replica counts of `topic`'s partitions and its effective min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(credentials))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        replicas = {len(p["replicas"]) for t in described for p in t["partitions"]}
        answer = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = answer[0].to_object()["resources"][0]["config_entries"]
        min_isr = next(e["config_value"] for e in entries if e["config_names"] == "min.insync.replicas")
        return replicas, min_isr
    finally:
        await admin.delete_topics([topic])
        await admin.close()


@pytest.mark.integration
async def test_a_single_broker_gets_one_replica(infra: Infra) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    created = await create_missing_topics(
        infra.kafka_bootstrap, prefix, (topics.USAGE,), credentials=infra.kafka_admin
    )
    assert created == [prefix + topics.USAGE]
    replicas, min_isr = await _placement(infra.kafka_bootstrap, infra.kafka_admin, prefix + topics.USAGE)
    assert replicas == {1}
    assert min_isr == "1"


CLUSTER = os.environ.get("TALLY_TEST_KAFKA_CLUSTER_BOOTSTRAP", "")


def _cluster_admin(bootstrap: str) -> KafkaCredentials | None:
    first_port = bootstrap.split(",")[0].rpartition(":")[2]
    local = Path(os.environ.get("TALLY_LOCAL_DIR") or REPO / ".local")
    return credentials_in(local / f"kafka-cluster-{first_port}" / "credentials", "admin")


@pytest.mark.integration
@pytest.mark.skipif(not CLUSTER, reason="no three-broker cluster (TALLY_TEST_KAFKA_CLUSTER_BOOTSTRAP)")
async def test_a_three_broker_cluster_gets_three_replicas_and_min_isr_two() -> None:
    credentials = _cluster_admin(CLUSTER)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    created = await create_missing_topics(CLUSTER, prefix, (topics.USAGE,), credentials=credentials)
    assert created == [prefix + topics.USAGE]
    replicas, min_isr = await _placement(CLUSTER, credentials, prefix + topics.USAGE)
    assert replicas == {3}
    assert min_isr == "2"
