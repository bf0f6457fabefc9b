"""The shared types of numeric command-line options: bounds included, the rest refused with the range."""
from __future__ import annotations

import argparse

import pytest

from rmi_kv import options


@pytest.mark.parametrize("parse, text, value", [
    (options.port(), "1", 1), (options.port(), "65535", 65535), (options.port(allow_zero=True), "0", 0),
    (options.seconds(), "0.5", 0.5), (options.seconds(), "3600", 3600.0), (options.seconds(allow_zero=True), "0", 0.0),
    (options.connections(), "8", 8),
])
def test_values_in_range_are_taken(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize("parse, text, message", [
    (options.port(), "0", "must be a port number from 1 to 65535, not 0"),
    (options.port(allow_zero=True), "65536", "must be a port number from 0 to 65535, not 65536"),
    (options.port(), "http", "must be a port number from 1 to 65535, not http"),
    (options.seconds(), "0", "must be a number of seconds above 0 and at most 3600, not 0"),
    (options.seconds(), "inf", "must be a number of seconds above 0 and at most 3600, not inf"),
    (options.seconds(allow_zero=True), "nan", "must be a number of seconds from 0 to 3600, not nan"),
    (options.whole_number(low=1, high=10), "2.5", "must be a whole number from 1 to 10, not 2.5"),
])
def test_values_out_of_range_say_what_is_allowed(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
        parse(text)
