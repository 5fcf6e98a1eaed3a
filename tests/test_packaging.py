"""What setup.cfg claims is what the matrix runs: its lower bounds, constraints/lowest.txt and
the noxfile's Pythons cannot drift apart."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def declared_requirements() -> list[Requirement]:
    """Every requirement setup.cfg declares: install_requires and every extra."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = config["options"]["install_requires"].splitlines()
    for extra in config["options.extras_require"].values():
        lines.extend(extra.splitlines())
    return [Requirement(line) for line in lines if line.strip()]


def lowest_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def noxfile_constant(name: str) -> object:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == name for target in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py has no constant {name}")


def test_every_lower_bound_is_pinned_in_the_lowest_constraints():
    """Each requirement's minimum (setup.cfg, extras included) is the version the lowest session installs."""
    pins = lowest_pins()
    minimums: dict[str, str] = {}
    for requirement in declared_requirements():
        bounds = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(bounds) == 1, f"{requirement} needs exactly one lower bound (>=)"
        name = canonicalize_name(requirement.name)
        assert minimums.setdefault(name, bounds[0]) == bounds[0], f"{name} has two different lower bounds in setup.cfg"
    for name, minimum in minimums.items():
        assert name in pins, f"constraints/lowest.txt does not pin {name} (setup.cfg: >={minimum})"
        assert pins[name].split(".")[: len(minimum.split("."))] == minimum.split(".") and all(
            part == "0" for part in pins[name].split(".")[len(minimum.split(".")):]
        ), f"{name}: setup.cfg says >={minimum}, constraints/lowest.txt pins =={pins[name]}"
    assert set(pins) == set(minimums), f"constraints/lowest.txt pins what setup.cfg does not declare: {set(pins) - set(minimums)}"


def test_the_claimed_pythons_are_the_ones_the_matrix_runs():
    """python_requires, the classifiers and the noxfile name the same Python versions."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    pythons = noxfile_constant("PYTHONS")
    assert isinstance(pythons, list)
    assert config["options"]["python_requires"].strip() == f">={pythons[0]}"
    classified = [
        line.rsplit("::", 1)[1].strip()
        for line in config["metadata"]["classifiers"].splitlines()
        if line.strip().startswith("Programming Language :: Python :: 3.")
    ]
    assert classified == pythons
