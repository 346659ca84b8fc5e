"""The main thread's alarm clock: a self-pipe that runner threads and signal handlers write to,
so the main thread's ``select()`` returns at once instead of at its next timer."""

from __future__ import annotations

import os
import select


class WakeUp:
    """A non-blocking pipe: ``wake()`` from any thread, ``wait()`` in the main thread."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        #: A runner thread woke the main thread since the main thread last cleared this. Lets
        #: threads send one wake-up per batch of finished attempts instead of one per attempt.
        self.pending = False

    def wake(self) -> None:
        try:
            os.write(self._write, b"x")
        except (BlockingIOError, OSError):
            pass

    def wait(self, fds: list[int], timeout: float) -> list[int]:
        """Sleep until woken, one of ``fds`` is readable, or ``timeout`` seconds; return the
        readable ``fds``. Wake-ups that arrived meanwhile are consumed."""
        try:
            readable, _, _ = select.select([self._read, *fds], [], [], timeout)
        except InterruptedError:
            return []
        if self._read in readable:
            try:
                while os.read(self._read, 4096):
                    pass
            except BlockingIOError:
                pass
        return readable

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if woken (a stop request, a finished attempt).

        Wake-ups are consumed: one left in the pipe would end every later sleep at once, and
        a loop that backs off with this sleep (reconnecting through an outage) would spin.
        """
        self.wait([], seconds)
