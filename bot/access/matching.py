"""Resolving what a user typed to an account, role or zone: id, exact name, or unique prefix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """`match` is set when exactly one candidate fits; else `candidates` are the near misses."""

    query: str
    match: T | None
    candidates: Sequence[T]

    @property
    def ambiguous(self) -> bool:
        return self.match is None and len(self.candidates) > 1


def resolve(
    query: str,
    options: Sequence[T],
    *,
    key: Callable[[T], str],
    name: Callable[[T], str],
    alias: Callable[[T], str] | None = None,
) -> Resolved[T]:
    """An id or an exact (case-insensitive) name wins; otherwise a prefix must be unique.

    `alias` is a second name matched by the same rules (a permission group's label: `admin` is
    the exact label of Administrator)."""
    wanted = query.strip().casefold()
    if not wanted:
        return Resolved(query, None, options)
    for option in options:
        if key(option).casefold() == wanted:
            return Resolved(query, option, [option])

    def names(option: T) -> list[str]:
        extra = alias(option).casefold() if alias else ""
        return [name(option).casefold(), *([extra] if extra else [])]

    exact = [option for option in options if wanted in names(option)]
    if len(exact) == 1:
        return Resolved(query, exact[0], exact)
    prefixed = [option for option in options if any(text.startswith(wanted) for text in names(option))]
    if len(prefixed) == 1:
        return Resolved(query, prefixed[0], prefixed)
    return Resolved(query, None, prefixed or exact)
