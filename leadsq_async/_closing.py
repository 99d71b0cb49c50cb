"""`AsyncClosing`: ``async with`` for the library's objects that hold resources."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["AsyncClosing"]

_Self = TypeVar("_Self", bound="AsyncClosing")


class AsyncClosing:
    """``async with obj:`` gives ``obj`` and awaits ``obj.aclose()`` however the block exits."""

    __slots__ = ()

    async def aclose(self) -> None:
        """Release what the object holds; subclasses say what that is."""
        raise NotImplementedError

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
