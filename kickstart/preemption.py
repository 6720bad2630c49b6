"""Preemption loses nothing: a checkpoint within moments of a stop request, an exit at once on a second.

A cluster scheduler sends SIGTERM and kills the job a few seconds later; a learner update can take
longer than that. So a stop request does two things: the training loop stops at the end of its
current update (and writes its final checkpoint, exit status 130, as before), and *at once*, from a
thread of its own, each ``save`` callback writes a checkpoint of the state as of the last completed
update. :meth:`kickstart.train.Trainer.save` can do that while an update runs: it snapshots the state
under the learner's update lock (:attr:`kickstart.learner.Learner.lock`), which is held only while
the optimiser applies an update and the frame counters advance with it. Saves are serialised, so
the final one never interleaves with this one. (On a CUDA learner the snapshot's copy to the host
is ordered after the GPU work already queued on the stream: it waits for the kernels of the current
update, normally milliseconds.)

Where the request comes from:

* :meth:`Preemption.signals` (``kickstart train``, the PBT controller): SIGINT or SIGTERM. Python
  runs signal handlers in the main thread only, between bytecodes, so a handler waits for a long C
  call (a torch op, which releases the GIL) to return. The handlers installed here therefore do
  nothing; ``signal.set_wakeup_fd`` makes the C-level handler write the signal number to a socket
  immediately, and a daemon thread blocked on that socket acts on it. A signal after the first
  exits the process at once (status 130, without waiting for the current update), as soon as the
  checkpoints being written are on disk (at most :data:`EXIT_GRACE_S`).
* :meth:`Preemption.watch` (a PBT member, whose process ignores signals: its controller decides):
  a predicate polled from a thread, the member's stop request; a second one says to exit at once
  (its controller is gone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from typing import Callable, Iterator, NoReturn, Sequence

EXIT_STATUS = 130
"""The exit status of a run stopped on request (see ``kickstart.cli``), also on a second signal."""

EXIT_GRACE_S = 1.5
"""On a second signal, how long the exit waits for checkpoints being written to reach the disk."""

WATCH_EVERY_S = 0.1
"""How often :meth:`Preemption.watch` polls its predicates."""

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Checkpoint writes in progress (or requested and about to start) in this process: an immediate
# exit waits for them, so that it never leaves a stop request's checkpoint half-written.
_writes = 0
_writes_changed = threading.Condition()


def _begin_write() -> None:
    global _writes
    with _writes_changed:
        _writes += 1


def _end_write() -> None:
    global _writes
    with _writes_changed:
        _writes -= 1
        _writes_changed.notify_all()


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Mark a checkpoint write: an exit on a second signal waits for it (at most ``EXIT_GRACE_S``)."""
    _begin_write()
    try:
        yield
    finally:
        _end_write()


def wait_for_writes(timeout: float) -> bool:
    """Wait until no checkpoint write is in progress in this process; False on timeout."""
    with _writes_changed:
        return _writes_changed.wait_for(lambda: _writes == 0, timeout=timeout)


def _say(text: str) -> None:
    try:
        os.write(2, (text.rstrip("\n") + "\n").encode(errors="replace"))
    except OSError:
        pass


def _ignore(_signum, _frame) -> None:
    """The Python-level handler: the wakeup socket's thread does the work (see the module docstring)."""


class Preemption:
    """Stop requests for one run: ``on_stop`` callbacks and immediate ``saves`` on the first,
    an immediate exit on a signal after it.

    Args:
      saves: callables that each write a checkpoint of the last consistent state; called from a
        thread of their own while training goes on, so they must be safe to call from any thread
        (:meth:`kickstart.train.Trainer.save` is).
      on_stop: callables that ask the training loop to stop at the end of its current update
        (called from the watching thread; set a flag, never block).
      message: printed on stderr on an immediate exit (where the checkpoint is, how to resume).
    """

    def __init__(self, saves: Sequence[Callable[[], object]] = (), on_stop: Sequence[Callable[[], object]] = (),
                 message: str = ""):
        self._saves = list(saves)
        self._on_stop = list(on_stop)
        self.message = message
        self._lock = threading.Lock()
        self._stop_requested = False
        self._savers: list[threading.Thread] = []
        self._watchers: list[threading.Thread] = []
        self._closed = threading.Event()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> bool:
        """The first call runs ``on_stop`` and starts the saves in a daemon thread; later calls do
        nothing and return False. Safe from any thread."""
        with self._lock:
            if self._stop_requested:
                return False
            self._stop_requested = True
        for fn in self._on_stop:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - the saves matter more
                _say(f"kickstart: stop request failed: {e!r}")
        if self._saves:
            _begin_write()              # counted from now: an exit right after this waits for it
            t = threading.Thread(target=self._save_all, name="kickstart-preemption-save", daemon=True)
            self._savers.append(t)
            t.start()
        return True

    def _save_all(self) -> None:
        try:
            for save in self._saves:
                try:
                    save()
                except Exception as e:  # noqa: BLE001 - reported; the final save tries again
                    _say(f"kickstart: the checkpoint on the stop request failed: {e!r}")
        finally:
            _end_write()

    def exit_now(self) -> NoReturn:
        """Exit with status 130 now, once the checkpoint writes in progress are on disk (at most
        ``EXIT_GRACE_S``): the current update is not waited for, no cleanup runs. Actor
        processes exit when their pipe to this process closes; a PBT member when its parent is gone."""
        wait_for_writes(EXIT_GRACE_S)
        if self.message:
            with contextlib.suppress(OSError):
                if os.isatty(1):
                    os.write(1, b"\x1b[?25h\n")       # a progress bar may have hidden the cursor
            _say(self.message)
        os._exit(EXIT_STATUS)

    # -- sources of requests ------------------------------------------------------------------
    @contextlib.contextmanager
    def signals(self, signums: Sequence[int] = SIGNALS) -> Iterator["Preemption"]:
        """While inside: the first of ``signums`` is a stop request, any later one exits at once.
        Handlers and the wakeup fd are restored on leaving. Outside the main thread (where
        Python allows no signal handlers) it does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        rsock, wsock = socket.socketpair()
        wsock.setblocking(False)
        previous = {s: signal.getsignal(s) for s in signums}
        old_fd = signal.set_wakeup_fd(wsock.fileno())
        watcher = threading.Thread(target=self._watch_signals, args=(rsock, frozenset(signums)),
                                   name="kickstart-preemption-signals", daemon=True)
        try:
            for s in signums:
                signal.signal(s, _ignore)
            watcher.start()
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)
            signal.set_wakeup_fd(old_fd)
            with contextlib.suppress(OSError):
                wsock.send(b"\0")                    # not a signal number: the watcher returns
            if watcher.is_alive():
                watcher.join(timeout=5)
            rsock.close()
            wsock.close()
            self.join()

    def _watch_signals(self, rsock: socket.socket, signums: frozenset[int]) -> None:
        while True:
            try:
                data = rsock.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:             # one byte per signal delivered, in order
                if signum == 0:
                    return
                if signum in signums and not self.request_stop():
                    self.exit_now()

    def watch(self, stop: Callable[[], bool], exit: Callable[[], bool] | None = None,
              every: float = WATCH_EVERY_S) -> None:
        """Poll from a daemon thread until :meth:`close`: ``stop()`` true is a stop request,
        ``exit()`` true (checked after it) exits at once (:meth:`exit_now`)."""
        def loop() -> None:
            while not self._closed.wait(every):
                try:
                    if not self._stop_requested and stop():
                        self.request_stop()
                    if exit is not None and exit():
                        self.exit_now()
                except Exception as e:  # noqa: BLE001 - e.g. a stop event whose manager is gone
                    _say(f"kickstart: stop watch ended: {e!r}")
                    return

        t = threading.Thread(target=loop, name="kickstart-preemption-watch", daemon=True)
        self._watchers.append(t)
        t.start()

    def join(self, timeout: float | None = 30.0) -> None:
        """Wait for the saves a stop request started."""
        for t in list(self._savers):
            t.join(timeout)

    def close(self) -> None:
        """Stop watching and wait for the saves in progress (idempotent)."""
        self._closed.set()
        for t in list(self._watchers):
            if t is not threading.current_thread():
                t.join(5.0)
        self.join()


__all__ = ["EXIT_GRACE_S", "EXIT_STATUS", "Preemption", "wait_for_writes", "writing"]
