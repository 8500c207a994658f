"""Background work without concurrent.futures (usable while the interpreter shuts down)."""

from __future__ import annotations

import pytest

from batcher.run.background import Background


def test_result_and_error_come_back_to_the_joiner() -> None:
    assert Background(lambda a, b: a + b, 2, 3).result() == 5
    failing = Background(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result()
    failing.join()
    assert isinstance(failing.error, ZeroDivisionError) and not failing.running
