"""A small named registry for families of interchangeable parts (loaders, operators, ...).

Moved here from `luodi/registry.py` when `luodi.registry` became a package (model versions
and stages); `luodi.registry.Registry` is re-exported, so imports of it are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from luodi.errors import BadInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to parts of one family; registering a name twice is an error."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register `item` under `name`; raises ValueError if the name is taken."""
        if name in self._items:
            raise ValueError(f"{self.family} {name!r} is already registered")
        self._items[name] = item
        return item

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator form of `add` for one or more names."""

        def deco(item: T) -> T:
            for name in names:
                self.add(name, item)
            return item

        return deco

    def get(self, name: str) -> T:
        """The part named `name`; a BadInputError naming the known ones otherwise."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise BadInputError(f"unknown {self.family} {name!r}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)
