"""Ctrl-C: stop at the next step boundary, so the loop can save a checkpoint to resume from."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["GracefulStop"]


class GracefulStop:
    """SIGINT/SIGTERM set ``requested``, which the loop checks after each step; a second signal
    stops at once (``KeyboardInterrupt``). Handlers are installed only in the main thread."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
