"""The cgroup v2 tree recorded from a real Debian 12 systemd host (the VM tier), for the v2 tests.

fixtures/v2_systemd/ was written by `python -m tests.vm.record_v2_tree` (tests/vm/exporter_bed.py
set the host up: alice's burstable and best-effort containers, bob's guaranteed one with an OOM
kill, carol logged in over SSH): under cgroup/ only the files the samplers read, under proc/ the
containers' init processes' /proc/<pid>/cgroup and /proc/meminfo, and in expected.json the
numbers the recorder parsed from those same texts (not with hubmetrics) plus the labels Docker
reported. Tests get a copy (`load(tmp_path)`), so they may change it.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from hubmetrics.containers import info_from_labels
from hubmetrics.snapshot import ContainerInfo

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "v2_systemd"


@dataclass(frozen=True)
class Recording:
    root: Path
    expected: dict

    cgroup = property(lambda self: self.root / "cgroup")
    proc = property(lambda self: self.root / "proc")

    def containers(self) -> list[dict]:
        return self.expected["containers"]

    def container(self, name: str) -> dict:
        return next(c for c in self.containers() if c["name"] == name)

    def slices(self) -> list[dict]:
        return self.expected["slices"]

    def infos(self) -> list[ContainerInfo]:
        """What the exporter's ContainerDirectory makes of Docker's answer for these containers."""
        return [info_from_labels(c["id"], c["name"], c["labels"], c["init_pid"], c["cgroup_parent"])
                for c in self.containers()]


def load(tmp_path: Path) -> Recording:
    root = tmp_path / "v2_systemd"
    shutil.copytree(FIXTURE, root)
    return Recording(root, json.loads((root / "expected.json").read_text()))
