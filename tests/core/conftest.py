"""The core's unit tests run over both storage engines: SQLite, and plain dicts,
which shows the core needs nothing of a storage beyond its interfaces."""
from support.engines import make_storage  # noqa: F401  (the fixture, over both engines)
