"""The package's import graph: no cycles, and every layer imports only the layers below it.

Layers, bottom up (docs/architecture.md): ``physics`` (and the leaf ``version``) < ``catalogue``
< ``engine`` < ``analysis`` < the library API (``api``) and the figures (``figures``) < the
commands at the top level.
Imports are read from the source with ``ast`` (lazy imports inside functions count too).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "moejax"
RANK = {"version": 0, "physics": 0, "catalogue": 1, "engine": 2, "analysis": 3, "api": 4, "figures": 4}
COMMAND_RANK = 5  # every other top-level module: sweep, breakeven, fit, calibrate, plot, bench, cli, schema
SHARED = ("moejax.cli", "moejax.schema")  # the shell and the Hydra schemas every command shares


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that ``name`` imports (``from .x import y`` resolves to ``.x.y`` when
    that is a module, else to ``.x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


@functools.cache  # parsed once per session: every parametrised test reads the same sources
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def rank(name: str) -> int:
    """A module's layer; the package root (``moejax``, the public re-exports) sits above all."""
    parts = name.split(".")
    if len(parts) == 1:
        return COMMAND_RANK + 1
    return RANK.get(parts[1], COMMAND_RANK)


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(g[u]):
            if state.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if v not in state and (cycle := visit(v)):
                return cycle
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(g):
        if u not in state and (cycle := visit(u)):
            return cycle
    return None


def test_the_checker_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_is_read():
    g = graph()
    assert "moejax.physics.cost" in g["moejax.engine.grid"]
    assert "moejax.physics.specs" in g["moejax.physics.cost"]


def test_no_import_cycle():
    assert find_cycle(graph()) is None


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_only_downward(name):
    upward = sorted(
        m for m in graph()[name] if rank(m) > rank(name) or (rank(m) == rank(name) == COMMAND_RANK and m not in SHARED)
    )
    assert not upward, f"{name} (layer {rank(name)}) imports {upward}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_physics_imports_only_jax_and_numpy(name):
    if rank(name) != 0:
        return
    third_party = set()
    for node in ast.walk(ast.parse(modules()[name].read_text())):
        if isinstance(node, ast.Import):
            third_party.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            third_party.add(node.module.split(".")[0])
    assert third_party <= {"__future__", "jax", "numpy", "dataclasses", "functools", "typing", "math", "collections"}, third_party


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= 500, f"{name} has {lines} lines: split it by concept"
