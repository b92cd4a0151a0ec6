"""Bus implementations, registered by name; :func:`make_bus` picks one from the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from storywatch.bus.base import Bus, Consumer, Producer, Record

if TYPE_CHECKING:
    from storywatch.settings import BusSettings

__all__ = ["BUSES", "Bus", "Consumer", "Producer", "Record", "make_bus"]


def _embedded(settings: BusSettings) -> Any:
    from storywatch.bus.embedded import EmbeddedBus

    return EmbeddedBus(settings.path, retention_s=settings.retention_hours * 3600)


def _kafka(settings: BusSettings) -> Any:
    from storywatch.bus.kafka import KafkaBus

    return KafkaBus.from_settings(settings)


BUSES: dict[str, Callable[[BusSettings], Bus]] = {"embedded": _embedded, "kafka": _kafka}


def make_bus(settings: BusSettings) -> Bus:
    return BUSES[settings.kind](settings)
