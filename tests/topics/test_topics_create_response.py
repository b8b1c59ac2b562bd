"""How `ensure` reads a CreateTopics answer: lost races are fine, real refusals are not."""

from types import SimpleNamespace

from topics.ensure import split_create_errors


def test_already_exists_is_a_lost_race_not_a_failure() -> None:
    response = SimpleNamespace(topic_errors=[("a", 0, None), ("b", 36, "Topic 'b' already exists.")])
    assert split_create_errors(response) == ({"b"}, [])


def test_other_errors_name_the_topic_and_the_broker_reason() -> None:
    response = SimpleNamespace(topic_errors=[("c", 37, "Number of partitions must be larger than 0."), ("d", 42, "")])
    already, refusals = split_create_errors(response)
    assert already == set()
    assert refusals == ["c: Number of partitions must be larger than 0.", "d: INVALID_REQUEST"]


def test_version_zero_answers_have_no_message() -> None:
    assert split_create_errors(SimpleNamespace(topic_errors=[("e", 38)])) == (set(), ["e: INVALID_REPLICATION_FACTOR"])
