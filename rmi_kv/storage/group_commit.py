"""Group commit: the forced writes of concurrent threads share one SQLite commit, so one fsync.

A thread queues its operations; the first thread that finds no commit under
way takes everything queued and commits it, the others wait for it. One
operation that fails never sinks the others: the shared transaction is first
run plainly (nearly every time nothing fails, and savepoints would cost four
statements a pair of operations); when one fails, it is rolled back whole and
run again with each operation in a savepoint of its own, so the failing one
is undone alone and the others are still committed. An operation may
therefore run again after a rollback: it must act only on the connection and
on the engine's state (``BatchState``, restored before the second run), or be
queued as not ``repeatable`` (one that consumes a stream), and then its batch
runs in savepoints at once.
"""
from __future__ import annotations

import sqlite3
import threading
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar, cast

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]


class BatchState(Protocol):
    """What the engine keeps in memory beside the database (its counters), kept
    in step with what a commit really keeps."""

    def snapshot(self) -> Any:
        """The current state, to compare or restore."""

    def restore(self, snapshot: Any) -> None:
        """Undo what a failed operation changed: back to ``snapshot``."""

    def before_commit(self, connection: sqlite3.Connection, snapshot: Any) -> None:
        """Write the state into the transaction about to commit (``snapshot``: as it was before)."""

    def after_rollback(self, connection: sqlite3.Connection) -> None:
        """The commit failed and was rolled back: reload the state from the database."""


class PendingWrite(Generic[T]):
    """One queued operation, and once its commit is done, its value or error."""

    __slots__ = ("operation", "repeatable", "value", "error", "done")

    def __init__(self, operation: Operation, repeatable: bool = True) -> None:
        self.operation = operation
        self.repeatable = repeatable
        self.value: Optional[T] = None
        self.error: Optional[BaseException] = None
        self.done = False

    def result(self) -> T:
        """The operation's value (once done); raises its error."""
        if self.error is not None:
            raise self.error
        return cast(T, self.value)


class GroupCommit:
    """Forced transactions on one writer connection, shared between threads."""

    def __init__(self, connection: sqlite3.Connection, state: BatchState) -> None:
        self._connection = connection
        self._state = state
        self._lock = threading.Lock()
        self._queue: list[PendingWrite] = []
        self._committing = False
        self._commit_done = threading.Condition(self._lock)
        self._closed = False
        #: forced SQLite commits (each one fsync) and the operations they carried
        self.forced_commits = self.forced_operations = 0

    def write(self, operation: Operation[T], *, repeatable: bool = True) -> T:
        """Run ``operation`` in a forced transaction (shared with other threads' queued
        writes); its value, or its error raised. ``repeatable``: it may be run a
        second time after a rollback (see the module's docstring)."""
        return self.write_many([operation], repeatable=repeatable)[0].result()

    def write_many(self, operations: list[Operation], *, repeatable: bool = True) -> list[PendingWrite]:
        """Run ``operations`` in one forced commit (shared with other threads'
        queued writes); each one succeeds or fails on its own."""
        pendings: list[PendingWrite] = [PendingWrite(operation, repeatable) for operation in operations]
        if not pendings:
            return pendings
        with self._lock:
            if self._closed:
                raise RuntimeError("storage is closed")
            self._queue.extend(pendings)
            while self._committing and not pendings[-1].done:
                self._commit_done.wait()
            if pendings[-1].done:
                return pendings
            self._committing = True
            batch, self._queue = self._queue, []
        try:
            self._commit_batch(batch)
        except Exception:
            pass  # every operation of the batch holds the error
        finally:
            with self._lock:
                self._committing = False
                self._commit_done.notify_all()
        return pendings

    def close(self) -> None:
        """Wait for the commit under way; refuse every write from now on."""
        with self._lock:
            while self._committing:
                self._commit_done.wait()
            self._closed = True

    def _commit_batch(self, batch: list[PendingWrite]) -> None:
        connection = self._connection
        before = self._state.snapshot()
        try:
            connection.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:  # alone: its failure rolls back the whole (one-operation) transaction
                batch[0].value = batch[0].operation(connection)
            elif not all(pending.repeatable for pending in batch):
                self._run_isolated(batch)
            elif not self._run_plainly(batch):
                if connection.in_transaction:  # some errors (a full disk) end the transaction themselves
                    connection.execute("ROLLBACK")
                self._state.restore(before)
                connection.execute("BEGIN IMMEDIATE")
                self._run_isolated(batch)
            self._state.before_commit(connection, before)
            connection.execute("COMMIT")
            self.forced_commits += 1
            self.forced_operations += len(batch)
        except BaseException as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            self._state.after_rollback(connection)
            for pending in batch:
                pending.error = pending.error or error
                pending.done = True
            raise
        for pending in batch:
            pending.done = True

    def _run_plainly(self, batch: list[PendingWrite]) -> bool:
        """Run every operation in the one transaction; False (values unset) when one failed."""
        connection = self._connection
        try:
            for pending in batch:
                pending.value = pending.operation(connection)
        except Exception:
            for pending in batch:
                pending.value = None
            return False
        return True

    def _run_isolated(self, batch: list[PendingWrite]) -> None:
        """Run each operation in a savepoint: one bad operation must not sink the batch."""
        connection = self._connection
        for index, pending in enumerate(batch):
            savepoint = f"op{index}"
            connection.execute(f"SAVEPOINT {savepoint}")
            before = self._state.snapshot()
            try:
                pending.value = pending.operation(connection)
                connection.execute(f"RELEASE {savepoint}")
            except Exception as error:
                connection.execute(f"ROLLBACK TO {savepoint}")
                connection.execute(f"RELEASE {savepoint}")
                self._state.restore(before)
                pending.error = error
