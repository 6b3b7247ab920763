"""Creating the project's topics with explicit partition counts (idempotent)."""

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from tally_contracts.topics import ALL_TOPICS_WITH_DLQ, PARTITIONS


async def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    names: tuple[str, ...] = ALL_TOPICS_WITH_DLQ,
    partitions: int = PARTITIONS,
) -> None:
    """Create every missing topic. Retries while the broker is still starting."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((KafkaConnectionError, KafkaError, OSError)),
        wait=wait_exponential(multiplier=0.2, max=2),
        stop=stop_after_delay(60),
        reraise=True,
    ):
        with attempt:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                missing = [f"{prefix}{n}" for n in names if f"{prefix}{n}" not in existing]
                if missing:
                    with contextlib.suppress(TopicAlreadyExistsError):
                        await admin.create_topics(
                            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                        )
            finally:
                await admin.close()


def main() -> None:
    """`python -m tally_messaging.topic_admin`: create the topics on TALLY_KAFKA_BOOTSTRAP."""
    import asyncio

    from tally_messaging.settings import ServiceSettings

    settings = ServiceSettings()
    asyncio.run(ensure_topics(settings.kafka_bootstrap, settings.topic_prefix))
    print(f"topics ready on {settings.kafka_bootstrap} (prefix {settings.topic_prefix!r})")


if __name__ == "__main__":
    main()
