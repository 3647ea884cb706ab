"""Functions (or classes) registered by name, so a config string selects one.

The pattern of verl's `register_adv_est` / `register_policy_loss`: a decorator records
the object under a name, a lookup returns it, and both refuse mistakes loudly (a
duplicate name is an error at import time, an unknown one names the known ones).
Advantage estimators, policy losses and tasks share this one implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Functions registered by name, so a config string selects one (verl's registries).

    Args:
        kind: What is registered, for error messages ("advantage estimator").

    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.functions: dict[str, F] = {}

    def register(self, name: str | Enum) -> Callable[[F], F]:
        """A decorator that records the function under `name`; duplicates are refused."""
        key = name.value if isinstance(name, Enum) else name

        def decorator(fn: F) -> F:
            if key in self.functions and self.functions[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self.functions[key] = fn
            return fn

        return decorator

    def get(self, name: str | Enum) -> F:
        """The function registered under `name`; ValueError naming the known ones if none."""
        key = name.value if isinstance(name, Enum) else name
        try:
            return self.functions[key]
        except KeyError:
            known = ", ".join(sorted(self.functions))
            raise ValueError(f"unknown {self.kind} {key!r} (known: {known})") from None
