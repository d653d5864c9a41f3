"""Input files read with limits checked before their contents can take memory: a file size, a
nesting depth and, for YAML, a node count with aliases expanded (a 1 KB "billion laughs" alias
bomb expands to 10⁹ nodes: refused after composing its few hundred distinct nodes, without
building anything). One-line ``SpecError`` naming the path and the limit."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..physics.specs import SpecError

MAX_FILE_BYTES = 16 * 2**20  # bytes: the published measurement file is 47 kB, HF config.json files a few kB
MAX_DEPTH = 32  # nesting levels of mappings and lists
MAX_NODES = 1_000_000  # YAML nodes, aliases expanded


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SpecError(f"{path}: file size = {size} bytes is invalid: allowed at most {MAX_FILE_BYTES} bytes")


def _too_deep(path: Path, depth) -> SpecError:
    return SpecError(f"{path}: nesting depth = {depth} is invalid: allowed at most {MAX_DEPTH} levels")


def _yaml_tree(path: Path, root) -> None:
    """Depth and node count of a composed YAML node graph as if every alias were expanded, each
    distinct node visited once."""
    seen: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes below and including it, height)

    def visit(node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise _too_deep(path, f"more than {MAX_DEPTH}")
        if id(node) in seen:
            count, height = seen[id(node)]
            if depth + height > MAX_DEPTH:
                raise _too_deep(path, depth + height)
            return count, height
        children = (
            [c for kv in node.value for c in kv]
            if isinstance(node, yaml.MappingNode)
            else node.value
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        count, height = 1, 0
        for child in children:
            n, h = visit(child, depth + 1)
            count, height = count + n, max(height, h + 1)
            if count > MAX_NODES:
                raise SpecError(
                    f"{path}: node count = more than {MAX_NODES} (YAML aliases expanded) is invalid: allowed at most {MAX_NODES}"
                )
        seen[id(node)] = (count, height)
        return count, height

    visit(root, 0)


def _read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8; a file that is not UTF-8 text (a binary handed over by
    mistake) is a one-line ``SpecError`` naming the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{path}: byte {e.start} = {data[e.start : e.start + 1]!r} is invalid: the file must be UTF-8 text"
        ) from None


def load_yaml(path: Path):
    """The parsed YAML document of ``path`` (safe loader) after :func:`_check_size` and the tree
    limits; ``yaml.YAMLError`` as PyYAML raises it."""
    path = Path(path)
    _check_size(path)
    loader = yaml.SafeLoader(_read_text(path))
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise _too_deep(path, f"more than {MAX_DEPTH}") from None
        if node is None:
            return None
        _yaml_tree(path, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_json(path: Path):
    """The parsed JSON of ``path`` after :func:`_check_size`, refused when nested deeper than
    ``MAX_DEPTH``; ``json.JSONDecodeError`` as the json module raises it."""
    path = Path(path)
    _check_size(path)
    try:
        data = json.loads(_read_text(path))
    except RecursionError:
        raise _too_deep(path, f"more than {MAX_DEPTH}") from None
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(path, f"more than {MAX_DEPTH}")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((c, depth + 1) for c in children)
    return data
