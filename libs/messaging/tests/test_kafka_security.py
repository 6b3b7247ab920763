"""Where a local Kafka's passwords are found, and how a bootstrap string is read."""

from pathlib import Path

from tally_messaging.kafka_security import bootstrap_servers, local_credentials_dir


def test_bootstrap_servers_are_split_on_commas_and_trimmed() -> None:
    assert bootstrap_servers("127.0.0.1:29092, 127.0.0.1:29094,,127.0.0.1:29096 ") == [
        "127.0.0.1:29092",
        "127.0.0.1:29094",
        "127.0.0.1:29096",
    ]
    assert bootstrap_servers("127.0.0.1:9092") == ["127.0.0.1:9092"]


def test_one_broker_and_a_cluster_each_have_their_credentials_folder(tmp_path: Path) -> None:
    single = tmp_path / "kafka-9092" / "credentials"
    cluster = tmp_path / "kafka-cluster-29092" / "credentials"
    single.mkdir(parents=True)
    cluster.mkdir(parents=True)

    assert local_credentials_dir("127.0.0.1:9092", tmp_path) == single
    assert local_credentials_dir("127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096", tmp_path) == cluster
    assert local_credentials_dir("localhost:29092, localhost:29094", tmp_path) == cluster


def test_no_credentials_folder_for_a_remote_broker_or_one_never_started(tmp_path: Path) -> None:
    (tmp_path / "kafka-9092" / "credentials").mkdir(parents=True)

    assert local_credentials_dir("kafka.example.com:9092", tmp_path) is None
    assert local_credentials_dir("127.0.0.1:9093", tmp_path) is None
    assert local_credentials_dir("127.0.0.1:9092,127.0.0.1:9094", tmp_path) is None
    assert local_credentials_dir("", tmp_path) is None
