"""Targets: the models to migrate to, from the entry-point group or MODULE:ATTR references."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import MetaData

from ..model.errors import TargetError
from ..model.tablecopy import copy_table

ENTRY_POINT_GROUP = "orchestrator_migrate.models"


@dataclass(frozen=True)
class Target:
    """One source of models: where it came from and its MetaData."""

    reference: str
    metadata: MetaData


def as_metadata(obj: Any, reference: str) -> MetaData:
    """The MetaData of a MetaData or a declarative base; TargetError otherwise."""
    if isinstance(obj, MetaData):
        return obj
    metadata = getattr(obj, "metadata", None)
    if isinstance(metadata, MetaData):
        return metadata
    raise TargetError(
        f"models {reference!r}: is a {type(obj).__name__}, not a SQLAlchemy MetaData"
        " or declarative base"
    )


def load_reference(reference: str) -> Target:
    """Import MODULE:ATTR and return it as a Target."""
    return Target(reference, as_metadata(import_reference(reference, "models"), reference))


def import_reference(reference: str, what: str) -> Any:
    """The object MODULE:ATTR names (ATTR may be dotted); TargetError naming what is wrong."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"{what} {reference!r}: expected MODULE:ATTR, e.g. myserver.models:Base")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(
            f"{what} {reference!r}: module {module_name!r} does not import: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(
                f"{what} {reference!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


def discover(group: str = ENTRY_POINT_GROUP) -> list[Target]:
    """Targets registered by installed packages in the entry-point group."""
    found = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        reference = f"{ep.name} = {ep.value}"
        try:
            obj = ep.load()
        except Exception as exc:
            raise TargetError(f"entry point {reference!r}: does not import: {exc}") from None
        found.append(Target(reference, as_metadata(obj, reference)))
    return found


def resolve(references: Sequence[str], extra: Iterable[MetaData] = ()) -> list[Target]:
    """The targets of a run: given MetaData objects, else references, else the entry points."""
    given = [Target(f"<MetaData {i}>", md) for i, md in enumerate(extra)]
    if given:
        return given
    if references:
        return [load_reference(ref) for ref in references]
    targets = discover()
    if not targets:
        raise TargetError(
            "no models: register a MetaData or declarative base in the entry-point group"
            f" {ENTRY_POINT_GROUP!r}, or pass --models MODULE:ATTR"
            " (MCP_TASK_ORCHESTRATOR_MODELS)"
        )
    return targets


def merge(targets: Sequence[Target]) -> MetaData:
    """One MetaData holding every target's tables; TargetError when two define one table."""
    if len(targets) == 1:
        return targets[0].metadata
    merged = MetaData()
    owner: dict[str, str] = {}
    for target in targets:
        for table in target.metadata.sorted_tables:
            if table.key in owner:
                raise TargetError(
                    f"table {table.key!r} is defined by both {owner[table.key]!r}"
                    f" and {target.reference!r}"
                )
            owner[table.key] = target.reference
            copy_table(table, merged)
    return merged
