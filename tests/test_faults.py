"""The cheap scenarios of the fault suite (bench/faults.py), run through its Python API so CI runs
them: a real Tornado counter app under load from 16 keep-alive connections, on a redis-server of
its own that is frozen, killed and restarted from its AOF, has its connections killed, or runs out
of memory. Each must meet the expectations the harness gives it: no status but 200 or 503 (with
Retry-After), no acknowledged increment lost, requests succeeding again once Redis is back.
About 9 s each; the whole suite, failovers included: ``python bench/faults.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "bench" / "faults.py"
CHEAP_SCENARIOS = ["freeze", "client-kill", "restart-aof", "oom-noeviction"]


def load_harness() -> ModuleType:
    """bench/faults.py as a module (bench/ is no package); registered before it runs, as its
    dataclasses need."""
    name = "bench_faults"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


faults = load_harness()


@pytest.mark.parametrize("name", CHEAP_SCENARIOS)
def test_the_app_meets_the_scenarios_expectations(name: str, record_property: Any) -> None:
    result = faults.run_scenario(faults.SCENARIOS[name])
    print(faults.text_table(faults.HEADER, [faults.row(result)]))
    print(faults.details(result))
    record_property(name, faults.details(result))
    assert result.requests > 1000, "the load never got going"
    assert result.missed() == [], result.describe()
