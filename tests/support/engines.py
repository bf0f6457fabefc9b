"""A ``make_storage`` fixture over both storage engines, SQLite and plain dicts
(``memory_storage``): a conftest that imports it runs its tests over both."""
from __future__ import annotations

import pytest

from support.memory_storage import MemoryImage, MemoryStorage


@pytest.fixture(params=["sqlite", "memory"])
def make_storage(request, make_storage):
    """``make_storage(name)`` of either engine; opening a name again sees what was written under it."""
    if request.param == "sqlite":
        return make_storage
    images: dict[str, MemoryImage] = {}

    def make(name: str = "replica", durable: bool = True) -> MemoryStorage:
        return MemoryStorage(images.setdefault(name, MemoryImage()))

    return make
