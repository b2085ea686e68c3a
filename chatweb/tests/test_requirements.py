"""The engine the tests run is the engine GPU hosts run: one vLLM release in every pin."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(vllm(?:-cpu)?)==([^\s;#]+)", re.MULTILINE)


def pins() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [*ROOT.glob("requirements*.txt"), *ROOT.glob("requirements*.lock")]:
        for name, version in PIN.findall(path.read_text()):
            found.setdefault(version, set()).add(f"{path.name}: {name}")
    return found


def test_the_cpu_and_gpu_builds_pin_the_same_vllm_release():
    found = pins()
    files = {where.split(":")[0] for wheres in found.values() for where in wheres}
    assert {"requirements-cpu.txt", "requirements-gpu.txt", "requirements-cpu.lock"} <= files, found
    assert len(found) == 1, f"vLLM is pinned at different releases: {found}"
