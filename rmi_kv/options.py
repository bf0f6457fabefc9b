"""Types of the numeric command-line options, shared by every script.

Each factory returns a function for argparse's ``type=``: a value out of
range is refused while the command line is parsed, so it is a usage error
(exit code 2) naming what is allowed, never a surprise deep in a socket
call. argparse puts the option's name in front of the message:

    run_client.py: error: argument --ns-port: must be a port number from 1 to 65535, not 70000

The console, which parses its own command lines, calls the same functions.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

#: longest wait, in seconds, any option may ask for
MAX_SECONDS = 3600.0


def whole_number(*, low: int, high: int, what: str = "a whole number") -> Callable[[str], int]:
    """An int from ``low`` to ``high`` (both included)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what} from {low} to {high}, not {text}")
        return value

    parse.__name__ = "whole number"
    return parse


def port(*, allow_zero: bool = False) -> Callable[[str], int]:
    """A TCP port; with ``allow_zero``, 0 too (the OS chooses one)."""
    return whole_number(low=0 if allow_zero else 1, high=65535, what="a port number")


def connections() -> Callable[[str], int]:
    """How many connections a process holds at most (``--max-connections``)."""
    return whole_number(low=8, high=10000, what="a number of connections")


def seconds(*, allow_zero: bool = False) -> Callable[[str], float]:
    """A duration in seconds: above 0 (or 0 with ``allow_zero``), at most MAX_SECONDS."""
    high = MAX_SECONDS
    allowed = f"from 0 to {high:g}" if allow_zero else f"above 0 and at most {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 <= value <= high if allow_zero else 0 < value <= high):  # nan fails both
            raise argparse.ArgumentTypeError(f"must be a number of seconds {allowed}, not {text}")
        return value

    parse.__name__ = "seconds"
    return parse


def address(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (``[v6]:PORT`` too) as (host, port); port 0
    when none is given (``--advertise``: then the port the replica listens on)."""
    host, separator, port_text = text.rpartition(":")
    if not separator or "]" in port_text or (":" in host and not host.endswith("]")):
        host, port_text = text, "0"
    if not host.strip("[]") or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"takes HOST or HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port_text)


address.__name__ = "address"
