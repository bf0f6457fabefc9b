"""The storage tests run over both engines, SQLite and plain dicts: the contracts
of the interfaces hold for each. Tests of SQLite itself (group commit, the
property tests) say so."""
from support.engines import make_storage  # noqa: F401  (the fixture, over both engines)
