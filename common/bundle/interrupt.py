"""Ctrl-C that stops a bundle run promptly, even in the middle of a long native step.

Python handles a SIGINT only between byte codes: while the main thread is inside one long native call (autograd's
``backward`` of a 3D network on a CPU, a convolution at full size) ``KeyboardInterrupt`` waits until the call returns,
which on a CPU running a GPU recipe is tens of seconds to minutes. The signal itself arrives at once, and Python's C
handler writes its number to the file descriptor given to :func:`signal.set_wakeup_fd`; a daemon thread reading it
learns of the Ctrl-C immediately. It gives the main thread ``grace_seconds`` to stop the ordinary way (the
``KeyboardInterrupt`` traceback, Ignite's handlers), and otherwise ends the process with exit status 130, the shell's
code for SIGINT. Nothing is lost that a normal stop would keep: checkpoints are written to a temporary file and moved
into place (``common.handlers.AtomicCheckpointSaver``), so the last finished one stays valid and the same command
resumes from it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["INTERRUPT_EXIT_CODE", "install_prompt_interrupt"]

INTERRUPT_EXIT_CODE = 130
"""Exit status after a Ctrl-C that the main thread could not handle in time (128 + SIGINT, as shells report it)."""

_installed = False
_lock = threading.Lock()


def _watch(read_fd: int, grace_seconds: float) -> None:
    while True:
        try:
            received = os.read(read_fd, 64)
        except OSError:
            return
        if not received:
            return
        if signal.SIGINT in received:
            break
    time.sleep(grace_seconds)
    # still alive: the main thread is inside a native call that does not return soon
    sys.stderr.write(
        f"\nInterrupted (Ctrl-C): stopping now, {grace_seconds:g} s after the signal, without waiting for the current "
        "step to finish. Finished checkpoints are complete (written atomically); run the same command to resume.\n"
    )
    sys.stderr.flush()
    os._exit(INTERRUPT_EXIT_CODE)


def install_prompt_interrupt(grace_seconds: float = 3.0) -> bool:
    """Make Ctrl-C end the process within ``grace_seconds`` (idempotent; main thread only).

    Nothing is installed when SIGINT is ignored (a background job of a non-interactive shell, ``nohup``), when it
    has a handler other than Python's default (the caller's own), or when another component already uses the wakeup
    file descriptor (an asyncio loop).

    Args:
        grace_seconds: how long the main thread gets to stop by itself after the signal.

    Returns:
        True when the watchdog is (or already was) installed.

    Raises:
        ValueError: when ``grace_seconds`` is negative.
    """
    global _installed
    if grace_seconds < 0:
        raise ValueError(f"grace_seconds must be 0 or more, got {grace_seconds}")
    with _lock:
        if _installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return False
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # the C handler must never block on a full pipe
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        if previous != -1:  # somebody else listens there: give it back
            signal.set_wakeup_fd(previous)
            os.close(read_fd)
            os.close(write_fd)
            return False
        threading.Thread(target=_watch, args=(read_fd, grace_seconds), name="interrupt-watchdog", daemon=True).start()
        _installed = True
        return True
