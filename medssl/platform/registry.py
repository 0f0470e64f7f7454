"""Name -> class tables for modalities, encoders, methods, tasks and reducers.

Classes register themselves with a decorator next to their code; configs name them.
Tables are filled lazily: the first lookup imports the modules that register entries, so
importing medssl stays cheap and optional dependencies are only touched when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Registry:
    """One table, e.g. ``METHODS``; ``METHODS.get("simclr")`` returns the class."""

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._modules = modules
        self._loaded = False
        self._table: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._table and self._table[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._table[name] = obj
            return obj

        return decorate

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def get(self, name: str) -> Any:
        self._load()
        if name not in self._table:
            raise KeyError(
                f"unknown {self.kind} '{name}'; available: {', '.join(sorted(self._table)) or 'none'}"
            )
        return self._table[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._table


ENCODERS = Registry("encoder", ("medssl.platform.encoders",))
METHODS = Registry("method", ("medssl.platform.methods",))
REDUCERS = Registry("reducer", ("medssl.platform.reduction",))
# Modalities and tasks live outside platform; their packages register on import and the
# pipelines room imports them (platform never imports modalities or pipelines).
MODALITIES = Registry("modality")
TASKS = Registry("task")
