"""One object per process, for the daemon threads a process keeps (the run-log
flusher, the change-notice publisher)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """`get()` answers this process's object, made on first use. A forked child (a
    Celery pool process) makes its own: the parent's threads do not cross a fork."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._object: T | None = None
        self._pid = 0

    def get(self) -> T:
        with self._lock:
            if self._object is None or self._pid != os.getpid():
                self._object = self._make()
                self._pid = os.getpid()
            return self._object
