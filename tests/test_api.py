import batcher


def test_public_api_is_small_sorted_and_pinned() -> None:
    assert batcher.__all__ == sorted(batcher.__all__)
    assert batcher.__all__ == [
        "BatcherError",
        "CheckpointMismatchError",
        "ConfigError",
        "Das5Policy",
        "FixedPolicy",
        "NoUsableCheckpointError",
        "NotFinishedError",
        "PolicyError",
        "RunLockedError",
        "SaveError",
        "Segment",
        "SegmentStopped",
        "SlotTooShortError",
        "TimeSpecError",
        "load_checkpoint",
        "policy_from_spec",
        "segment",
    ]


def test_every_error_derives_from_the_base() -> None:
    for name in batcher.__all__:
        obj = getattr(batcher, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, batcher.BatcherError), name
