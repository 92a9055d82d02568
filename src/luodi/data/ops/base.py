"""The operator contract: a pydantic config (its parameters) that processes batches of records.

An operator maps each live record of a batch to the record itself (untouched), a new dict
(modified) or a `Drop(reason, detail)`. Operators that must see the whole input before deciding
(dedup, boilerplate detection) set `is_global` and implement `fit`; the pipeline then feeds them
every live record once before `process`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, PrivateAttr

from luodi.data.records import KINDS, Record, RecordKind
from luodi.registry import Registry


class Drop(NamedTuple):
    """An operator's verdict that a record goes: a short reason and an optional detail."""

    reason: str
    detail: str = ""


class Operator(BaseModel, ABC):
    """Base of cleaning operators: fields are the operator's parameters (from a recipe)."""

    model_config = ConfigDict(extra="forbid")

    name: ClassVar[str]
    is_global: ClassVar[bool] = False
    kinds: ClassVar[tuple[str, ...]] = tuple(KINDS.names())
    """Record kinds the operator applies to."""

    _kind: RecordKind | None = PrivateAttr(default=None)

    def bind(self, kind: RecordKind) -> Operator:
        """Attach the record kind this operator will see; returns self."""
        self._kind = kind
        return self

    @property
    def kind(self) -> RecordKind:
        assert self._kind is not None, "operator used before bind()"
        return self._kind

    def fit(self, batches: Iterable[list[Record]]) -> None:
        """Global operators learn what to drop or change from every live record."""

    @abstractmethod
    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """One output per input record: the record, a modified copy, or a Drop."""


OPERATORS: Registry[type[Operator]] = Registry("operator")


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: register an operator class under its `name`."""
    OPERATORS.add(cls.name, cls)
    return cls
