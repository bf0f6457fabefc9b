"""The command language of the client: what a line says, and the help that explains it.

One parser serves the console, script mode (``--file`` or commands piped on
stdin) and the one-shot commands (``rmi_kv.cli.execute`` runs what it
parses), so a command means the same thing everywhere. Lines are split as a
shell would (quotes, backslash, ``#`` comments); ``txn`` separates its
writes with commas:

    put color "blue sky"
    txn put a 1, put b 2, delete c     # one atomic transaction
"""
from __future__ import annotations

import argparse
import difflib
import shlex
from dataclasses import dataclass
from typing import Optional

from rmi_kv import options
from rmi_kv.core.validation import MAX_LIMIT
from rmi_kv.errors import InvalidRequest

#: how many keys ``keys`` lists unless told otherwise
KEYS_LIMIT = 100
#: ``keys --limit N``'s type: as many as a replica returns at most
parse_limit = options.whole_number(low=1, high=MAX_LIMIT)

#: commands that change data (a cancelled one may or may not have committed)
WRITE_COMMANDS = frozenset({"put", "delete", "txn", "cas"})
#: commands about every member, not only the replica in use
CLUSTER_COMMANDS = frozenset({"status", "health", "member", "verify"})
#: commands that talk to the cluster; the others only change the session
DATA_COMMANDS = frozenset({"put", "get", "delete", "txn", "keys", "count", "cas", "snapshot", "exists",
                           "ping"}) | CLUSTER_COMMANDS
#: how results are written out (``-w``, and ``output`` in the console and scripts)
OUTPUT_FORMATS = ("simple", "table", "json")


@dataclass(frozen=True)
class HelpEntry:
    usage: str
    summary: str
    example: str


HELP: dict[str, HelpEntry] = {
    "put": HelpEntry("put KEY VALUE", "set KEY to VALUE on every replica (one two-phase commit)",
                     'put color "blue sky"'),
    "get": HelpEntry("get KEY | get --prefix PREFIX [--after KEY] [--limit N]",
                     "read KEY from the replica in use; with --prefix, the keys starting with PREFIX and their "
                     f"values, {KEYS_LIMIT} or N at a time (a cut page ends with the command for the next one)",
                     "get --prefix user:"),
    "delete": HelpEntry("delete KEY | delete --prefix PREFIX",
                        "delete KEY on every replica; with --prefix, every key starting with PREFIX in one "
                        "atomic transaction (at most as many as a transaction may write), and say how many",
                        "delete --prefix session:"),
    "exists": HelpEntry("exists KEY", "1 when KEY has a value on the replica in use, else 0", "exists color"),
    "ping": HelpEntry("ping", "a round trip to the replica in use: PONG, its name and the latency", "ping"),
    "count": HelpEntry("count [PREFIX]", "how many keys there are (starting with PREFIX)", "count user:"),
    "cas": HelpEntry("cas KEY EXPECTED NEW",
                     "compare-and-set: set KEY to NEW only if it holds EXPECTED now (the word absent: only if it "
                     "has no value); otherwise nothing is written and the answer says what it holds",
                     "cas counter 41 42"),
    "txn": HelpEntry("txn [if KEY == VALUE, if KEY != VALUE, ...] put KEY VALUE, delete KEY, ...",
                     "several writes in one atomic transaction: all of them or none; with guards (VALUE absent "
                     "means no value), none unless every guard holds when it commits",
                     "txn if a == 1, put a 2, delete b"),
    "keys": HelpEntry("keys [PREFIX] [--after KEY] [--limit N]",
                      f"list the keys (starting with PREFIX) in order, {KEYS_LIMIT} or N at a time; a cut list "
                      "ends with the command for the next page: --after KEY goes on after KEY, like SCAN's cursor",
                      "keys user: --after user:0099"),
    "watch": HelpEntry("watch KEY | watch --prefix PREFIX",
                       "print every change committed to KEY (or to the keys starting with PREFIX) as it happens, "
                       "from any replica: time, key, new value or deleted, txid; until Ctrl-C. After a lost "
                       "connection it reconnects by itself and says whether changes may have been missed",
                       "watch --prefix user:"),
    "status": HelpEntry("status", "every member: reachable, keys, digest, in-doubt transactions, counts; "
                        "then what is wrong, if anything", "status"),
    "health": HelpEntry("health", "every member: healthy, or why not; healthy only when all are and hold the same data",
                        "health"),
    "verify": HelpEntry("verify", "every member recomputes its digest from its data now and compares it with the "
                        "one it keeps; a difference is reported, and the keys that differ are re-synced from the "
                        "majority", "verify"),
    "member": HelpEntry("member list", "every member: name, URI, reachable or not, and its role", "member list"),
    "snapshot": HelpEntry("snapshot save|status FILE",
                          "save: copy the committed data of the replica in use (or any) to FILE, consistently, "
                          "while writes go on; status: FILE's keys, size and digest, and whether it checks out "
                          "(run_server.py --restore FILE starts a new cluster from it)", "snapshot save backup.snap"),
    "use": HelpEntry("use REPLICA", "send the next commands to REPLICA", "use replica3"),
    "trace": HelpEntry("trace on|off", "after every write, show the two-phase commit round it caused", "trace on"),
    "output": HelpEntry("output simple|table|json", "how results are shown from now on (as -w does)", "output table"),
    "raw": HelpEntry("raw on|off", "show values and keys as they are, without quotes (as --raw does)", "raw on"),
    "help": HelpEntry("help [COMMAND]", "list the commands, or explain one", "help txn"),
    "quit": HelpEntry("quit", "leave (Ctrl-D does too)", "quit"),
}

#: other names of commands: the redis ones, and exit
ALIASES = {"exit": "quit", "set": "put", "del": "delete"}

#: (fewest, most) arguments of each command but txn
_ARITY = {"put": (2, 2), "get": (1, 1), "delete": (1, 1), "status": (0, 0), "health": (0, 0), "verify": (0, 0),
          "count": (0, 1), "cas": (3, 3), "snapshot": (2, 2),
          "member": (1, 1), "exists": (1, 1), "ping": (0, 0), "output": (0, 1), "raw": (0, 1),
          "use": (1, 1), "trace": (0, 1), "help": (0, 1), "quit": (0, 0)}


class UsageError(InvalidRequest):
    """A command line that cannot be run as written (exit code 2)."""


class _Separator:
    """An unquoted comma between the writes of ``txn``."""

    def __repr__(self) -> str:
        return "SEPARATOR"


SEPARATOR = _Separator()


@dataclass(frozen=True)
class Command:
    """One parsed command line."""

    name: str
    args: tuple = ()
    #: the writes of txn: key -> value, or None to delete
    writes: Optional[dict] = None
    limit: int = KEYS_LIMIT
    #: keys: list only the keys after this one (the last key of the page before)
    after: Optional[str] = None
    #: get --prefix, delete --prefix: the keys starting with this (None: one key)
    prefix: Optional[str] = None
    #: txn: what must hold for its writes to be made, (key, "==" or "!=", value) with a
    #: value of None meaning absent (``core.guards``)
    guards: tuple = ()


# ------------------------------------------------------------------ parsing
def tokenize(line: str, *, commas: bool = False) -> list:
    """Split ``line`` into words the way a shell does; with ``commas``, an
    unquoted comma becomes a ``SEPARATOR``. ``#`` at the start of a word
    starts a comment."""
    words: list = []
    current: list[str] = []
    in_word, quote, index = False, None, 0

    def flush() -> None:
        nonlocal in_word
        if in_word:
            words.append("".join(current))
            current.clear()
            in_word = False

    while index < len(line):
        char = line[index]
        if quote == "'":
            quote = None if char == "'" else quote
            if quote:
                current.append(char)
        elif quote == '"':
            if char == '"':
                quote = None
            elif char == "\\" and line[index + 1:index + 2] in ('"', "\\"):
                index += 1
                current.append(line[index])
            else:
                current.append(char)
        elif char.isspace():
            flush()
        elif char == "#" and not in_word:
            break
        elif commas and char == ",":
            flush()
            words.append(SEPARATOR)
        elif char in "'\"":
            quote, in_word = char, True
        elif char == "\\" and index + 1 < len(line):
            index += 1
            current.append(line[index])
            in_word = True
        else:
            current.append(char)
            in_word = True
        index += 1
    if quote:
        raise UsageError(f"unclosed {quote} quote", hint="close the quote, or escape it with a backslash")
    flush()
    return words


def parse_line(line: str) -> Optional[Command]:
    """The command on ``line``, or None for a blank line or a comment."""
    words = tokenize(line)
    if not words:
        return None
    if words[0].lower() == "txn":
        return parse_txn(tokenize(line, commas=True)[1:])
    return parse_words(words)


def parse_words(words: list) -> Command:
    """A command from already split words (the first is its name)."""
    name = ALIASES.get(words[0].lower(), words[0].lower())
    args = tuple(words[1:])
    if name == "txn":
        return parse_txn(list(args))
    if name == "keys":
        return _parse_keys(list(args))
    if name in ("get", "delete") and "--prefix" in args:
        return _parse_prefixed(name, list(args))
    if name == "watch":
        return parse_watch(list(args))
    if name not in _ARITY:
        raise UsageError(f"unknown command {words[0]!r}", hint=_unknown_hint(words[0]))
    fewest, most = _ARITY[name]
    if not fewest <= len(args) <= most:
        raise UsageError(f"usage: {HELP[name].usage}", hint=f"for example: {HELP[name].example}")
    if name in ("trace", "raw") and args and args[0].lower() not in ("on", "off"):
        raise UsageError(f"usage: {HELP[name].usage}", hint=f"for example: {HELP[name].example}")
    if name == "output" and args:
        if args[0].lower() not in OUTPUT_FORMATS:
            raise UsageError(f"usage: {HELP['output'].usage}", hint=f"for example: {HELP['output'].example}")
        args = (args[0].lower(),)
    if name == "member":
        if args[0].lower() != "list":
            raise UsageError(f"usage: {HELP['member'].usage}", hint=f"for example: {HELP['member'].example}")
        args = ("list",)
    if name == "cas":
        return Command("cas", (args[0], args[2]), guards=((args[0], "==", expected_value(args[1])),))
    if name == "snapshot":
        if args[0].lower() not in ("save", "status"):
            raise UsageError(f"usage: {HELP['snapshot'].usage}", hint=f"for example: {HELP['snapshot'].example}")
        args = (args[0].lower(), args[1])
    if name == "help" and args and ALIASES.get(args[0].lower(), args[0].lower()) not in HELP:
        raise UsageError(f"no command named {args[0]!r}", hint=_unknown_hint(args[0]))
    return Command(name, args)


def _parse_prefixed(name: str, words: list[str]) -> Command:
    """``get --prefix P [--after KEY] [--limit N]`` and ``delete --prefix P``."""
    allowed = ("--prefix", "--after", "--limit") if name == "get" else ("--prefix",)
    rest, values = _options(name, words, allowed)
    if rest or values["--prefix"] is None:
        raise UsageError(f"usage: {HELP[name].usage}", hint=f"for example: {HELP[name].example}")
    return Command(name, (), prefix=values["--prefix"], limit=_limit(name, values), after=values.get("--after"))


def _options(name: str, words: list[str], allowed: tuple) -> tuple[list[str], dict]:
    """Split ``words`` into the plain words and the values of the ``allowed`` options (anywhere)."""
    plain, values = [], dict.fromkeys(allowed)
    while words:
        word = words.pop(0)
        if word not in values:
            if word.startswith("--") and len(word) > 2:
                raise UsageError(f"{name} takes no option {word}", hint=f"for example: {HELP[name].example}")
            plain.append(word)
        elif not words:
            raise UsageError(f"{word} needs a value", hint=f"for example: {HELP[name].example}")
        else:
            values[word] = words.pop(0)
    return plain, values


def _limit(name: str, values: dict) -> int:
    if values.get("--limit") is None:
        return KEYS_LIMIT
    try:
        return parse_limit(values["--limit"])
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"--limit {error}", hint=f"for example: {name} --limit 50") from None


def _parse_keys(words: list[str]) -> Command:
    """``keys [PREFIX] [--after KEY] [--limit N]``, the options anywhere after ``keys``."""
    prefixes, values = _options("keys", words, ("--after", "--limit"))
    if len(prefixes) > 1:
        raise UsageError(f"usage: {HELP['keys'].usage}", hint=f"for example: {HELP['keys'].example}")
    return Command("keys", tuple(prefixes), limit=_limit("keys", values), after=values["--after"])


def parse_watch(words: list[str]) -> Command:
    """``watch KEY`` as Command("watch", ("key", KEY)); ``watch --prefix P`` as ("prefix", P)."""
    if len(words) == 2 and words[0] == "--prefix":
        return Command("watch", ("prefix", words[1]))
    if len(words) == 1 and words[0] != "--prefix":
        return Command("watch", ("key", words[0]))
    raise UsageError(f"usage: {HELP['watch'].usage}", hint=f"for example: {HELP['watch'].example}")


def next_page(payload: dict) -> str:
    """The command for the page after a cut ``keys`` or ``get --prefix`` result (words quoted as in a shell)."""
    if "items" in payload:
        words = ["get", "--prefix", payload["prefix"], "--after", payload["next_after"]]
    else:
        words = ["keys", *([payload["prefix"]] if payload["prefix"] else []), "--after", payload["next_after"]]
    if payload["limit"] != KEYS_LIMIT:
        words += ["--limit", str(payload["limit"])]
    return shlex.join(words)


def argv_words(argv: list[str]) -> list:
    """Words of a txn given on the command line: a comma ending (or starting) a word separates writes.
    One argument holding the whole transaction (``txn 'put a "x y", put b z'``) reads as in the console."""
    if len(argv) == 1 and any(character.isspace() for character in argv[0]):
        return tokenize(argv[0], commas=True)
    words: list = []
    for word in argv:
        leading, trailing = word.startswith(","), word.endswith(",") and len(word) > 1
        core = word.strip(",") if word != "," else ""
        if leading or word == ",":
            words.append(SEPARATOR)
        if core or not word:  # an empty argument is an empty value ("put k ''"), not nothing
            words.append(core)
        if trailing:
            words.append(SEPARATOR)
    return words


def parse_txn(words: list) -> Command:
    """``put K V, delete K, ...`` (words and SEPARATORs) as one transaction."""
    groups: list[list[str]] = [[]]
    for word in words:
        if word is SEPARATOR:
            groups.append([])
        else:
            groups[-1].append(word)
    writes: dict[str, Optional[str]] = {}
    guards: list[tuple] = []
    for group in (g for g in groups if g):
        if group[0].lower() == "if":
            if writes:
                raise UsageError("txn: the guards (if ...) come before the writes",
                                 hint=f"for example: {HELP['txn'].example}")
            guards.append(_txn_guard(group))
            continue
        key, value = _txn_write(group)
        if key in writes:
            raise UsageError(f"key {key!r} appears twice in the transaction",
                             hint="write each key once per transaction")
        writes[key] = value
    if not writes:
        raise UsageError(f"usage: {HELP['txn'].usage}", hint=f"for example: {HELP['txn'].example}")
    return Command("txn", writes=writes, guards=tuple(guards))


def _txn_guard(group: list[str]) -> tuple:
    """``if KEY == VALUE`` or ``if KEY != VALUE`` (VALUE ``absent``: no value) as (key, op, value)."""
    if len(group) == 4 and group[2] in ("==", "!="):
        return group[1], group[2], expected_value(group[3])
    raise UsageError(f"txn: expected 'if KEY == VALUE' or 'if KEY != VALUE', got {' '.join(group)!r}",
                     hint=f"for example: {HELP['txn'].example} (VALUE absent: the key has no value)")


#: the word that, as an expected value, means "no value"
ABSENT = "absent"


def expected_value(word: str) -> Optional[str]:
    """An expected value as a guard compares it: the word ``absent`` is no value."""
    return None if word == ABSENT else word


def _txn_write(group: list[str]) -> tuple[str, Optional[str]]:
    operation = ALIASES.get(group[0].lower(), group[0].lower())
    if operation == "put" and len(group) == 3:
        return group[1], group[2]
    if operation == "delete" and len(group) == 2:
        return group[1], None
    if operation not in ("put", "delete"):
        raise UsageError(f"txn: {group[0]!r} is not a write", hint="a transaction holds only writes, 'put KEY VALUE' "
                         f"and 'delete KEY'; read with get before or after it, for example: {HELP['txn'].example}")
    if len(group) < (3 if operation == "put" else 2):
        raise UsageError(f"txn: {' '.join(group)!r} needs a key{' and a value' if operation == 'put' else ''}",
                         hint=f"for example: {HELP['txn'].example}")
    raise UsageError(f"txn: expected 'put KEY VALUE' or 'delete KEY', got {' '.join(group)!r}",
                     hint=f"separate the writes with commas, for example: {HELP['txn'].example}")


def _unknown_hint(word: str) -> str:
    close = difflib.get_close_matches(word.lower(), list(HELP) + list(ALIASES), n=1)
    suggestion = f"did you mean '{ALIASES.get(close[0], close[0])}'? " if close else ""
    return suggestion + "type 'help' for the list of commands"
