"""Creating the project's topics with explicit partition counts (idempotent).

Replication follows the cluster: on a cluster of three brokers or more every partition has
three replicas and `min.insync.replicas=2` (with the producers' acks=all, a write is
acknowledged once two brokers have it, so losing one broker loses no acknowledged message
and writes go on); on a single broker (the demo, the tests) the replication factor is 1.
"""

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from tally_contracts.topics import ALL_TOPICS_WITH_DLQ, PARTITIONS
from tally_messaging.kafka_security import KafkaCredentials, client_options

MAX_REPLICATION = 3
"""Replicas per partition on a cluster: one broker may be lost (or restarted) while two keep
acknowledging writes."""


def replication_for(brokers: int) -> tuple[int, dict[str, str]]:
    """The replication factor and topic configs for a cluster that reports `brokers` brokers:
    RF = min(3, brokers), and `min.insync.replicas=2` when RF is 3 (below that the broker's
    default, 1, so a two-broker cluster still accepts writes with one broker down)."""
    if brokers < 1:
        raise ValueError(f"the cluster reports {brokers} brokers: cannot place a topic")
    factor = min(MAX_REPLICATION, brokers)
    configs = {"min.insync.replicas": "2"} if factor == MAX_REPLICATION else {}
    return factor, configs


async def create_missing_topics(
    bootstrap: str,
    prefix: str = "",
    names: tuple[str, ...] = ALL_TOPICS_WITH_DLQ,
    partitions: int = PARTITIONS,
    credentials: KafkaCredentials | None = None,
) -> list[str]:
    """Create every missing topic of `names`, once, replicated as `replication_for` says for
    the brokers the cluster reports now; returns the names created.

    On a broker with ACLs, the principal sees (and may find missing) only the topics it may
    describe, and only `admin` may create: a service passes just the topics it uses, which
    the set-up has made, so it creates nothing.

    Raises a KafkaError when the broker cannot be reached or refuses a topic for a
    reason other than "already exists" (e.g. no controller yet during an election):
    the broker answers such errors inside its response, so they are raised here.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(credentials))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [f"{prefix}{n}" for n in names if f"{prefix}{n}" not in existing]
        if missing:
            cluster = await admin.describe_cluster()
            factor, configs = replication_for(len(cluster["brokers"]))
            response = await admin.create_topics(
                [
                    NewTopic(t, num_partitions=partitions, replication_factor=factor, topic_configs=configs)
                    for t in missing
                ]
            )
            for topic, code, *_ in response.topic_errors:
                error = for_code(code)
                if code != 0 and error is not TopicAlreadyExistsError:
                    raise error(f"creating topic {topic}")
        return missing
    finally:
        await admin.close()


async def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    names: tuple[str, ...] = ALL_TOPICS_WITH_DLQ,
    partitions: int = PARTITIONS,
    give_up_after_seconds: float = 60,
    credentials: KafkaCredentials | None = None,
) -> None:
    """Create every missing topic. Retries while the broker is still starting."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((KafkaConnectionError, KafkaError, OSError)),
        wait=wait_exponential(multiplier=0.2, max=2),
        stop=stop_after_delay(give_up_after_seconds),
        reraise=True,
    ):
        with attempt:
            await create_missing_topics(bootstrap, prefix, names, partitions, credentials)


def main() -> None:
    """`python -m tally_messaging.topic_admin`: create the topics on TALLY_KAFKA_BOOTSTRAP
    (as `admin` when the settings give credentials)."""
    import asyncio

    from tally_messaging.kafka_security import kafka_credentials
    from tally_messaging.settings import ServiceSettings

    settings = ServiceSettings()
    credentials = kafka_credentials(settings, "admin")
    asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, credentials=credentials))
    print(f"topics ready on {settings.kafka_bootstrap} (prefix {settings.topic_prefix!r})")


if __name__ == "__main__":
    main()
