"""Work on a thread of its own, its result or exception kept for whoever joins it.

Not ``concurrent.futures``: a background checkpoint write may still be running while the
interpreter shuts down (it waits for non-daemon threads), and by then ``concurrent.futures``
refuses new work ("cannot schedule new futures after interpreter shutdown").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Background"]

T = TypeVar("T")


class Background(Generic[T]):
    """Run ``fn(*args)`` on a new non-daemon thread; :meth:`result` joins it.

    >>> Background(sum, [1, 2, 3]).result()
    6
    """

    def __init__(self, fn: Callable[..., T], *args: Any, name: str = "batcher-background") -> None:
        self._value: T | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name=name)
        self._thread.start()

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # kept for the thread that joins
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> T:
        """Wait for the work; return its value or raise its exception."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self._value  # type: ignore[return-value]
