import batcher


def test_public_api_is_small_sorted_and_pinned() -> None:
    assert batcher.__all__ == sorted(batcher.__all__)
    assert batcher.__all__ == [
        "BatcherError",
        "CheckpointMismatchError",
        "ConfigError",
        "ElasticSampler",
        "NoUsableCheckpointError",
        "NotFinishedError",
        "Policy",
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


def test_importing_submodules_does_not_shadow_the_api() -> None:
    import importlib

    for module in (
        "batcher.api.loop",
        "batcher.api.start",
        "batcher.ckpt.store",
        "batcher.ckpt.load_checkpoint",
        "batcher.limits.policy",
        "batcher.workflow.cli",
    ):
        importlib.import_module(module)
    assert callable(batcher.segment) and batcher.segment.__module__ == "batcher.api.start"
    assert callable(batcher.load_checkpoint)
