"""Calling the hooks: before the change a raising hook stops the run; after it, it is logged."""

from __future__ import annotations

from loguru import logger

from ..context import Run
from ..model.errors import RefusedChange
from ..model.events import Event


def before_change(run: Run, event: Event) -> None:
    """Call each hook; the first that raises stops the run before anything changed."""
    for hook in run.hooks:
        try:
            hook(event)
        except Exception as exc:
            raise RefusedChange(
                f"migration stopped by hook {_name(hook)} at {type(event).__name__}, nothing"
                f" changed: {exc}"
            ) from exc


def after_change(run: Run, event: Event) -> None:
    """Call each hook; one that raises is logged and never undoes what the run did."""
    for hook in run.hooks:
        try:
            hook(event)
        except Exception as exc:
            logger.opt(exception=exc).debug("Hook {} raised", _name(hook))
            logger.warning(
                "Hook {} failed at {} (the run's outcome stands): {}",
                _name(hook),
                type(event).__name__,
                exc,
            )


def _name(hook: object) -> str:
    module = getattr(hook, "__module__", None) or ""
    name = getattr(hook, "__qualname__", None) or type(hook).__qualname__
    return f"{module}:{name}" if module else str(name)
