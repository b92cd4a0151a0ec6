"""Fixtures for the core tests: a fresh store of every registered kind.

``store`` is parametrised over :data:`storywatch.store.STORES` (ids ``sqlite``,
``postgres``), so a contract test that takes ``store`` runs once per implementation; a
test that needs several stores of one kind (two workers on one database) uses
``store_factory(kind)`` or ``store_factory(kind, shared_with=other)``. PostgreSQL stores
live on the session's throwaway server (``tests/pg_server.py``), one database per test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storywatch.settings.core import StoreSettings
from storywatch.store import STORES, Store
from tests.pg_server import PostgresServer, pg_server  # noqa: F401  (the session fixture)

StoreFactory = Callable[..., Store]


def _settings(
    kind: str, tmp_path: Path, n: int, server: Callable[[], PostgresServer], shared: str | None
) -> StoreSettings:
    if kind == "sqlite":
        return StoreSettings(kind="sqlite", path=Path(shared) if shared else tmp_path / f"state-{n}.db")
    if kind == "postgres":
        from storywatch.settings.base import Secret

        dsn = shared or server().new_database()
        return StoreSettings(kind="postgres", dsn=Secret(dsn), pool_size=4, connect_timeout_s=5)
    raise AssertionError(f"no test settings for store kind {kind!r}: add them to tests/core/conftest.py")


@pytest.fixture
def store_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """``make(kind, shared_with=None)``: a new, empty store of ``kind``, or a second handle
    on the same database as ``shared_with`` (another worker's view). All closed at teardown."""
    made: list[Store] = []
    where: dict[int, str] = {}

    def server() -> PostgresServer:
        # Only tests that use postgres start (and need) the server.
        return request.getfixturevalue("pg_server")  # type: ignore[no-any-return]

    def make(kind: str, shared_with: Store | None = None) -> Store:
        shared = where[id(shared_with)] if shared_with is not None else None
        settings = _settings(kind, tmp_path, len(made), server, shared)
        store = STORES[kind](settings)
        made.append(store)
        where[id(store)] = str(settings.path) if kind == "sqlite" else settings.dsn.get_secret_value()  # type: ignore[union-attr]
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture(params=sorted(STORES))
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each registered store kind in turn."""
    return str(request.param)


@pytest.fixture
def store(store_kind: str, store_factory: StoreFactory) -> Store:
    """A fresh, empty store of each registered kind in turn."""
    return store_factory(store_kind)
