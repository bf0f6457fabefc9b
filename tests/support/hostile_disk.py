"""What a hostile disk does to a database file, for the integrity tests: pages full of
random bytes, and rows changed behind the engine's back (its kept digest left as it was)."""
from __future__ import annotations

import random
import sqlite3
from pathlib import Path

PAGE = 4096


def scramble_pages(path: Path, seed: int, per_page: int = 40, *, keep_header: bool = False) -> None:
    """Put ``per_page`` random bytes in every page of ``path`` (from the second page on with
    ``keep_header``: the file still opens as a database), in place."""
    generator = random.Random(seed)
    data = bytearray(path.read_bytes())
    for page in range(PAGE if keep_header else 0, len(data), PAGE):
        for _ in range(per_page):
            data[min(len(data) - 1, page + generator.randrange(100, PAGE))] = generator.randrange(256)
    with open(path, "r+b") as handle:
        handle.write(data)


def change_behind_the_engine(path: Path, sql: str, *parameters: object) -> None:
    """Run ``sql`` on the database at ``path`` with a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        connection.execute(sql, parameters)
        connection.commit()
    finally:
        connection.close()
