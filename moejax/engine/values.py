"""Config values as the typed config holds them (frozen: tuples and read-only mappings) and back
as plain lists and dicts (error lines, provenance)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping


def freeze(value):
    """A plain config value made immutable: lists as tuples, mappings as read-only mappings."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def plain(value):
    """A frozen config value as plain lists and dicts (for error lines and provenance)."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def items(record) -> dict:
    """The fields of a config dataclass as a dict (shallow), in declaration order."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
