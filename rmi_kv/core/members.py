"""The member list a replica keeps: who the members are, and where each was last seen.

The members are kept durably by the replicas themselves (``MemberStore``, the
replica's own storage); the name server is only where their addresses are
found. So the member set never shrinks because a name server forgot, lost
or never had an entry (a restart without ``--storage``): a member leaves
only when an operator removes it. Invariants:

- a name the name server lists, not marked removed there, is a member;
- a member the name server does not list stays a member, at its last known
  URI (it may well still run there: the name server merely forgot it);
- a name is dropped only by an operator's removal: ``forget`` (told by the
  operator command) or the name server's removal marker;
- a removed name that registers again (a removed replica started again,
  which sets its old data aside and catches up) is a member again.

No network code: ``rmi_kv.wire.peers.Membership`` feeds it what the name
server and the other members say.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable, Mapping, Optional, Protocol

log = logging.getLogger(__name__)


class MemberStore(Protocol):
    """Where a replica keeps its member list durably (its storage)."""

    def members(self) -> dict[str, tuple[Optional[str], bool]]:
        """name -> (last known URI, removed)."""

    def save_members(self, changes: Mapping[str, tuple[Optional[str], bool]]) -> None:
        """Force these entries; a URI of None keeps the stored one."""


class _NoStore:
    """The member list of a process that keeps none (an operator command)."""

    def members(self) -> dict[str, tuple[Optional[str], bool]]:
        return {}

    def save_members(self, changes: Mapping[str, tuple[Optional[str], bool]]) -> None:
        pass


class MemberList:
    """Member names with their last known URIs, and the names an operator removed."""

    def __init__(self, *, store: Optional[MemberStore] = None,
                 on_address_change: Callable[[str], None] = lambda name: None) -> None:
        """``on_address_change(name)`` runs (under no lock) when a member's URI
        changes or it is removed: its connections are stale."""
        self._store: MemberStore = store if store is not None else _NoStore()
        #: say so in the log when the list changes (a replica's own list, not an operator's look)
        self._log_changes = store is not None
        self._on_address_change = on_address_change
        known = self._store.members()
        #: member name -> last known URI (None: known by name only, from a peer)
        self._uris: dict[str, Optional[str]] = {name: uri for name, (uri, removed) in known.items() if not removed}
        self._removed: set[str] = {name for name, (_, removed) in known.items() if removed}
        self._lock = threading.Lock()

    def learn(self, members: Mapping[str, Optional[str]]) -> None:
        """Take these members (name -> URI, or None when only the name is
        known) into the list, durably; a URI replaces the cached one."""
        changes: dict[str, tuple[Optional[str], bool]] = {}
        with self._lock:
            for name, uri in members.items():
                if name in self._uris and (uri is None or self._uris[name] == uri):
                    continue
                if name not in self._uris and self._log_changes:
                    log.info("member %s joined (%s)", name, uri or "address not known yet")
                changes[name] = (uri, False)
        if not changes:
            return
        self._store.save_members(changes)
        moved = []
        with self._lock:
            for name, (uri, _) in changes.items():
                self._removed.discard(name)
                if uri is None:
                    self._uris.setdefault(name, None)
                elif self._uris.get(name) != uri:
                    self._uris[name] = uri
                    moved.append(name)
        for name in moved:
            self._on_address_change(name)

    def forget(self, names: Iterable[str]) -> None:
        """Drop ``names`` for good (an operator removed them), durably."""
        names = set(names)
        if not names:
            return
        self._store.save_members({name: (None, True) for name in names})
        with self._lock:
            for name in names:
                self._removed.add(name)
                self._uris.pop(name, None)
        for name in names:
            self._on_address_change(name)
        if self._log_changes:
            log.info("member(s) %s removed by an operator", ", ".join(sorted(names)))

    def merge_listing(self, registered: Mapping[str, str], removed: set[str], *, self_name: str) -> None:
        """Apply what a name server lists: removal markers drop members (never
        ``self_name``), registrations add or move them; absence changes nothing."""
        if removed:
            self.forget(removed & set(self.names()) - {self_name})
        self.learn({name: uri for name, uri in registered.items() if name not in removed})

    def members(self) -> dict[str, Optional[str]]:
        """Member name -> last known URI (None when not known yet)."""
        with self._lock:
            return dict(self._uris)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._uris)

    def removed(self) -> list[str]:
        """The names an operator removed (they are not members)."""
        with self._lock:
            return sorted(self._removed)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._uris

    def uri_of(self, name: str) -> Optional[str]:
        with self._lock:
            return self._uris.get(name)
