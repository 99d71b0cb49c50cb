"""`EventHub`: where a session's events go, and who listens to them.

Apart from the events themselves (`_events`), which are built only while something
listens: a session that nobody subscribes to never imports their classes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from ._events import Event

__all__ = ["EventHub", "Listener"]

logger = logging.getLogger("leadsq_async")

Listener: TypeAlias = "Callable[[Event], object]"


class EventHub:
    """Where a session's events go: ``session.events``."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on.

        Returns:
            A function that unsubscribes it.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {type(listener).__name__}")
        self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            self._listeners = tuple(each for each in self._listeners if each is not listener)

        return unsubscribe

    @property
    def listening(self) -> bool:
        """Whether anything listens: emitters check it before building an event."""
        return bool(self._listeners)

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every listener; a listener that raises is logged and skipped."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("an event listener failed on %s", type(event).__name__)
