"""Which dead letters `tally replay` re-publishes, and into which topic."""

from tally_cli.replaying import Replay, choose_replays

SOURCE = "t1.usage"


def letter(
    offset: int, raw: object, key: str | None = "cus_1", topic: str | None = SOURCE
) -> dict[str, object]:
    return {"topic": topic, "partition": 2, "offset": offset, "key": key, "error": "unpriced", "raw": raw}


def test_only_dead_letters_containing_the_text_are_chosen() -> None:
    found = [letter(1, '{"id": "a", "service": "voice"}'), letter(2, '{"id": "b", "service": "data"}')]

    replays, refused = choose_replays(found, SOURCE, contains='"service": "data"')

    assert [r.value for r in replays] == [b'{"id": "b", "service": "data"}']
    assert refused == []


def test_without_contains_every_text_dead_letter_is_chosen_in_order() -> None:
    found = [letter(1, "one"), letter(2, "two"), letter(3, "three")]

    replays, _ = choose_replays(found, SOURCE, contains=None)

    assert [r.value for r in replays] == [b"one", b"two", b"three"]


def test_a_replay_goes_to_the_topic_it_came_from_with_its_key() -> None:
    replays, _ = choose_replays([letter(7, "x", key="cus_9")], SOURCE, contains=None)

    assert replays == [
        Replay(topic=SOURCE, key=b"cus_9", value=b"x", origin="t1.usage[2]@7", error="unpriced")
    ]


def test_a_dead_letter_without_key_or_topic_goes_keyless_to_the_topic_whose_dlq_was_read() -> None:
    replays, _ = choose_replays([letter(1, "x", key=None, topic=None)], SOURCE, contains=None)

    assert (replays[0].topic, replays[0].key) == (SOURCE, None)


def test_binary_and_truncated_values_are_refused_with_their_origin() -> None:
    found = [letter(1, {"hex": "ff00"}), letter(2, {"truncated": "{...", "bytes": 300000}), letter(3, "ok")]

    replays, refused = choose_replays(found, SOURCE, contains=None)

    assert [r.value for r in replays] == [b"ok"]
    assert refused == [
        "t1.usage[2]@1: the value is not text and cannot be replayed",
        "t1.usage[2]@2: the value is not text and cannot be replayed",
    ]


def test_a_dead_letter_without_an_error_still_lists() -> None:
    found = [{**letter(1, "x"), "error": None}]

    replays, _ = choose_replays(found, SOURCE, contains=None)

    assert replays[0].error == ""


def test_a_record_without_a_raw_value_is_refused() -> None:
    found = [{"error": "not a dead letter: the record is not a JSON object"}]

    replays, refused = choose_replays(found, SOURCE, contains=None)

    assert replays == []
    assert refused == ["t1.usage[None]@None: the value is not text and cannot be replayed"]
