"""The catalogue is the public description of what flows; these checks keep it coherent."""

from topics.catalogue import CATALOGUE, SENT, by_name


def test_names_are_unique_and_namespaced() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))
    assert all(n.startswith("vaccination.") for n in names)


def test_every_topic_has_a_producer_and_consumer() -> None:
    for spec in CATALOGUE:
        assert spec.producers, spec.name
        assert spec.consumers, spec.name
        assert spec.partitions >= 1


def test_sent_ledger_is_compacted_and_kept() -> None:
    assert SENT.configs()["cleanup.policy"] == "compact"
    assert SENT.configs()["retention.ms"] == "-1"


def test_by_name() -> None:
    assert by_name("vaccination.events.raw").partitions == 6
