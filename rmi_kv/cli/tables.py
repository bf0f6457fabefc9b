"""Results as tables (``-w table``, ``output table``): a key/value table where a result has rows.

``result_table`` gives the table of a command that has one, or None: a
command without a table of its own (put, delete, ping, and any added later)
is then shown as ``simple`` shows it; status, health, verify and member list
are tables (or their lines) already.
"""
from __future__ import annotations

from typing import Callable, Optional

from rich.table import Table
from rich.text import Text

from rmi_kv.cli.execute import Result
from rmi_kv.cli.render import make_table, shown


def _get_table(payload: dict, raw: bool) -> Table:
    table = _key_value_table()
    for item in payload["items"] if "items" in payload else [payload]:  # get --prefix: a row per key
        table.add_row(shown(item["key"], raw=raw), shown(item["value"], raw=raw))
    return table


def _keys_table(payload: dict, raw: bool) -> Table:
    table = make_table(("#", "key"), right={"#"}, compact=True)
    for index, key in enumerate(payload["keys"], 1):
        table.add_row(str(index), shown(key, raw=raw))
    return table


def _txn_table(payload: dict, raw: bool) -> Table:
    table = make_table(("write", "key", "value"), compact=True)
    for key, value in payload["writes"].items():
        if value is None:
            table.add_row("delete", shown(key, raw=raw), Text("—", style="dim"))
        else:
            table.add_row("put", shown(key, raw=raw), shown(value, raw=raw))
    return table


def _exists_table(payload: dict, raw: bool) -> Table:
    table = make_table(("key", "exists"), compact=True)
    table.add_row(shown(payload["key"], raw=raw), Text("1", "green") if payload["exists"] else Text("0", "yellow"))
    return table


def _key_value_table() -> Table:
    table = make_table(("key", "value"), compact=True)
    # a long value wraps in its cell; the key keeps its room
    table.columns[1].overflow = "fold"
    return table


#: command -> its table, from its payload and whether values are shown raw
TABLES: dict[str, Callable[[dict, bool], Table]] = {
    "get": _get_table, "keys": _keys_table, "txn": _txn_table, "exists": _exists_table,
}


def result_table(result: Result, *, raw: bool = False) -> Optional[Table]:
    """The table of a successful result, or None when its command has none (then: as ``simple``)."""
    builder = TABLES.get(result.command.name)
    return None if builder is None or result.error is not None else builder(result.payload, raw)
