"""One generic name -> factory registry (timm style) with glob listing and entry-point plugins."""
from __future__ import annotations

import difflib
import fnmatch
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; third-party factories arrive through an entry-point group."""

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._items: dict[str, Callable[..., T]] = {}
        self._resolvers: list[Callable[[str, set[str]], Callable[..., T] | None]] = []
        self._plugins_loaded = False

    def add_resolver(self, resolver: Callable[[str, set[str]], Callable[..., T] | None]) -> None:
        """Answer names nobody registered (e.g. a family of names built on demand): ``resolver(name, known)``
        returns a factory, or None to pass. Modules that define things hook themselves in; the registry imports
        none of them."""
        self._resolvers.append(resolver)

    def register(self, name: str | None = None, *, overwrite: bool = False) -> Callable:
        """Decorator: ``@REGISTRY.register("name")`` or ``@REGISTRY.register()`` (uses ``__name__``)."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name or factory.__name__, factory, overwrite=overwrite)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., T], *, overwrite: bool = False) -> None:
        if name in self._items and not overwrite and self._items[name] is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
        self._items[name] = factory

    def load_plugins(self) -> None:
        """Import every entry point of the group once; a broken plugin fails loudly, naming itself."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - re-raised with the plugin's name
                raise ImportError(f"plugin {ep.name!r} ({ep.value}) in group {self.group} failed to import: {exc}") from exc
            if ep.name not in self._items and callable(obj):
                self.add(ep.name, obj)

    def names(self) -> set[str]:
        """Every name a lookup answers; subclasses may add derived names."""
        self.load_plugins()
        return set(self._items)

    def get(self, name: str) -> Callable[..., T]:
        self.load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = self.names()
            for resolver in self._resolvers:
                factory = resolver(name, known)
                if factory is not None:
                    return factory
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} `oodbench list {self.kind}s` shows all "
                f"{len(known)} registered; plugins register through the entry-point group {self.group!r}."
            ) from None

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self.names() if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self.names()
