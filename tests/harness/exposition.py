"""Prometheus text exposition, read back as the tests compare it."""
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict:
    """{(sample name, sorted label pairs): value} of an exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
