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


def _postgres(settings: StoreSettings) -> Store:
    from storywatch.store.postgres import PostgresStore

    assert settings.dsn is not None  # the settings validator requires it
    return PostgresStore(
        settings.dsn.get_secret_value(),
        pool_size=settings.pool_size,
        pool_timeout_s=settings.pool_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_s=settings.statement_timeout_s,
    )


STORES: dict[str, Callable[[StoreSettings], Store]] = {"sqlite": _sqlite, "postgres": _postgres}


def make_store(settings: StoreSettings) -> Store:
    return STORES[settings.kind](settings)
