"""One registry helper for heads, models, data sets, metrics and experiments.

A name is written once, in a decorator beside the thing it names, with a one-line summary:

>>> MODELS = Registry("model")
>>> @MODELS.register("conv", "the paper's small conv VAE (App. B)")
... def build_conv_vae(image_shape, head, *, latent_dim=20): ...
>>> MODELS.get("conv") is build_conv_vae
True

An unknown name is an :class:`~sigmavae.options.OptionError` that lists the valid ones, so every
registry fails the same way (one line, the bad value and the choices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .options import OptionError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, filled by the :meth:`register` decorator.

    Args:
        kind: what the names name, for messages ("likelihood", "model", "data set", "metric").
        load_builtins: called once before the first lookup (imports the modules whose decorators
            register the built-in entries, so importing the registry stays cheap).
        display_rank: ``rank(name, entry)`` orders iteration (ties keep registration order);
            default: registration order.
    """

    def __init__(self, kind: str, load_builtins: Callable[[], object] | None = None,
                 display_rank: Callable[[str, T], int] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}
        self._load_builtins = load_builtins
        self._display_rank = display_rank

    def register(self, name: str, summary: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (which must be new)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def wrap(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            self._summaries[name] = " ".join(summary.split())
            return obj

        return wrap

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a toy entry)."""
        self._entries.pop(name, None)
        self._summaries.pop(name, None)

    def _ready(self) -> None:
        if self._load_builtins is not None:
            load, self._load_builtins = self._load_builtins, None
            load()

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._ready()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ready()
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        """The names in display order (``display_rank``, else registration order): the order
        of listings such as a report's metrics."""
        self._ready()
        names = list(self._entries)
        if self._display_rank is not None:
            rank = self._display_rank
            names.sort(key=lambda name: rank(name, self._entries[name]))
        return iter(names)

    def check(self, name: object) -> str:
        """``name`` if registered, else an OptionError naming it and the valid names."""
        if name not in self:
            raise OptionError(f"unknown {self.kind} {name!r}; choose one of: "
                              f"{', '.join(self.names())}")
        return name  # type: ignore[return-value]

    def get(self, name: object) -> T:
        """The object registered as ``name`` (OptionError listing the valid names if none)."""
        return self._entries[self.check(name)]

    def summary(self, name: object) -> str:
        """The one-line summary given at registration."""
        return self._summaries[self.check(name)]

    def describe(self) -> str:
        """``name: summary`` lines, sorted, for ``--help`` texts and listings."""
        return "\n".join(f"{name}: {self._summaries[name]}" for name in self.names())
