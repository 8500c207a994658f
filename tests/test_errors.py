"""One base exception; exit statuses that tell a clean stop (0) from the kinds of failure."""

from __future__ import annotations

import batcher.errors as errors


def test_every_error_is_a_batcher_error_with_a_nonzero_exit_status() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(c, errors.BatcherError) for c in classes)
    assert all(c.exit_code != 0 for c in classes)
    assert errors.SaveError.exit_code == 5 and errors.SlotTooShortError.exit_code == 6
    assert issubclass(errors.SaveError, OSError) and issubclass(errors.TimeSpecError, ValueError)
