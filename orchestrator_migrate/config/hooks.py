"""Hooks: callables from the entry-point group `orchestrator_migrate.hooks` and the HOOKS
setting, each called with every event of a run (model/events.py)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points

from ..model.errors import TargetError
from ..model.events import Hook
from .targets import import_reference

HOOK_GROUP = "orchestrator_migrate.hooks"


def load_hooks(references: Sequence[str], group: str = HOOK_GROUP) -> tuple[Hook, ...]:
    """The installed hooks (entry points, by name), then those the settings name."""
    found: list[Hook] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        reference = f"{ep.name} = {ep.value}"
        try:
            found.append(_callable(ep.load(), f"hook entry point {reference!r}"))
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(f"hook entry point {reference!r}: does not import: {exc}") from None
    for reference in references:
        found.append(_callable(import_reference(reference, "hook"), f"hook {reference!r}"))
    return tuple(found)


def _callable(obj: object, where: str) -> Hook:
    if not callable(obj):
        raise TargetError(f"{where}: is a {type(obj).__name__}, not a callable taking an event")
    return obj
