"""State stores, registered by name; :func:`make_store` picks one from the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from storywatch.store.base import Doc, Store

if TYPE_CHECKING:
    from storywatch.settings import StoreSettings

__all__ = ["STORES", "Doc", "Store", "make_store"]


def _sqlite(settings: StoreSettings) -> Store:
    from storywatch.store.sqlite import SQLiteStore

    return SQLiteStore(settings.path)


STORES: dict[str, Callable[[StoreSettings], Store]] = {"sqlite": _sqlite}


def make_store(settings: StoreSettings) -> Store:
    return STORES[settings.kind](settings)
