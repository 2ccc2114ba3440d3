"""Actor methods generated from the plain objects that own the operations, so that an
actor class is a thin shell and not a list of one-line forwarders.

    @ray.remote(...)
    @forwards("core", ClusterCore, "register_worker", "create_source", ...)
    @forwards("core.tasks", TaskDirectory, "create_task", ...)
    class Coordinator: ...

Each generated method is `async def name(self, *args, **kwargs)` awaiting
`self.core.tasks.name(*args, **kwargs)`, with the owner's name, docstring and signature
(`functools.wraps`: Ray checks the arguments of a call against that signature).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["forwards"]

T = TypeVar("T")


def _forwarder(path: tuple[str, ...], name: str,
               target: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(target)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        owner = self
        for attr in path:
            owner = getattr(owner, attr)
        return await getattr(owner, name)(*args, **kwargs)

    return method


def forwards(path: str, owner: type, *names: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: an async method per name, forwarding to `self.<path>.<name>`
    (`path` dotted; `owner` the class of that object, whose coroutine methods they are)."""
    parts = tuple(path.split("."))

    def decorate(cls: type[T]) -> type[T]:
        for name in names:
            target = inspect.getattr_static(owner, name, None)
            if not inspect.iscoroutinefunction(target):
                raise TypeError(f"{owner.__name__}.{name} is not a coroutine method")
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__}.{name} is defined already")
            setattr(cls, name, _forwarder(parts, name, target))
        return cls

    return decorate
