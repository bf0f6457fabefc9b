"""Logging set-up: millisecond timestamps and the process's role on every line."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(process_name)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class _ProcessNameFilter(logging.Filter):
    """Stamps each record with the replica's (or client's) name."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_name = self.process_name
        return True


def setup_logging(process_name: str, level: str | int = "INFO", log_file: str | Path | None = None,
                  stream=None) -> None:
    """Send rmi_kv's log lines to stderr (or ``stream``) and optionally a file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_ProcessNameFilter(process_name))
        root.addHandler(handler)
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            raise ValueError("log level must be one of DEBUG, INFO, WARNING, ERROR")
    root.setLevel(level)
    # Pyro5's own chatter (idle connections timing out, failed connects that rmi_kv
    # reports in its own words) only when debugging
    logging.getLogger("Pyro5").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL)
