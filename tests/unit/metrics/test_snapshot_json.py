"""`/api/snapshot` keeps the contract in docs/contracts.md: every key of the documented example,
with the same JSON type, is in what the exporter serves."""
import json
import re
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from tests.unit.metrics.test_collector import gpu_snapshot

CONTRACTS = Path(__file__).resolve().parents[3] / "docs" / "contracts.md"


def documented_example() -> dict:
    text = CONTRACTS.read_text()
    section = text.split("## Exporter snapshot JSON", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))


def _same_shape(doc, got, path="$"):
    if isinstance(doc, dict):
        assert isinstance(got, dict), path
        for key, value in doc.items():
            if path == "$.users":  # user names are examples; compare each served user to the documented one
                for name, user in got.items():
                    _same_shape(value, user, f"{path}.{name}")
                return
            assert key in got, f"{path}.{key} documented but not served"
            _same_shape(value, got[key], f"{path}.{key}")
    elif isinstance(doc, bool):
        assert isinstance(got, bool), path
    elif isinstance(doc, (int, float)):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), path
    elif isinstance(doc, list):
        assert isinstance(got, list), path
    else:
        assert isinstance(got, type(doc)), path


def test_served_json_has_the_documented_shape():
    served = json.loads(json.dumps(gpu_snapshot().to_json()))
    _same_shape(documented_example(), served)
    assert set(served["users"]) == {"alice", "carol"}
    assert served["users"]["alice"]["containers"] == ["jupyter-alice"]
    assert served["users"]["alice"]["gpus"] == ["0"]
    assert served["stale"] == {"cgroups": False, "docker": False, "nvml": False}
    assert served["host"]["gpus_free"] == 1


def test_a_snapshot_cannot_be_changed():
    snap = gpu_snapshot()
    with pytest.raises(FrozenInstanceError):
        snap.time = 0
    with pytest.raises(FrozenInstanceError):
        snap.users[0].cpu_seconds_total = 0
