import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from tally_messaging.settings import ServiceSettings
from tally_messaging.topic_admin import ensure_topics
from tally_testing import Infra, KafkaProbe, free_port, service_settings

# The probe service lives beside the tests; make it importable here and in subprocesses.
sys.path.insert(0, str(Path(__file__).parent))


@pytest_asyncio.fixture(loop_scope="session")
async def isolated(infra: Infra, new_database: Any) -> AsyncIterator[tuple[ServiceSettings, KafkaProbe]]:
    """Settings and a probe on topics and consumer groups of the test's own: a crash, a held
    partition or a new consumer group then meets the test's messages and no other test's."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await ensure_topics(infra.kafka_bootstrap, prefix, credentials=infra.kafka_admin)
    probe = KafkaProbe(infra.kafka_bootstrap, prefix, infra.kafka_admin)
    await probe.start()
    yield service_settings(infra, prefix, await new_database(), http_port=free_port()), probe
    await probe.stop()
