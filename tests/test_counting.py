"""The loops' counters: steps with and without seg.iterate, the epoch's last batch holds, resume."""

from __future__ import annotations

from batcher.api.counting import LoopCount
from batcher.ckpt.training_state import Position


def test_an_epoch_without_iterate_is_one_step_and_the_last_one_ends_the_loop() -> None:
    count = LoopCount()
    count.total = 2
    assert count.first_step and count.epoch_start_kinds() == ("epoch",)
    assert count.epoch_ended()  # another epoch follows
    assert (count.pos.epoch, count.pos.step, count.pos.tick) == (1, 1, 0)
    count.pos.tick += 1  # the segment's boundary
    assert not count.first_step
    assert not count.epoch_ended()  # the last: no boundary, but counted as a tick to save
    assert (count.pos.epoch, count.pos.step, count.pos.tick) == (2, 2, 2)
    assert count.steps_here == 2 and count.where() == "at epoch 2/2"


def test_batches_count_steps_and_the_epochs_last_batch_holds_for_its_tail() -> None:
    count = LoopCount()
    count.total = 1
    count.batches_begin(3)
    assert count.uses_iterate and count.epoch_start_kinds() == ("batch",)
    assert count.batch_ended() == (("batch",), False)
    assert count.batch_ended() == (("batch", "epoch"), False)  # one batch left: an epoch may follow
    assert count.batch_ended() == (("epoch",), True)  # the tail runs next: no stop, no save here
    assert (count.pos.batch, count.pos.step, count.epoch_len) == (3, 3, 3)
    assert not count.epoch_ended()
    assert (count.pos.epoch, count.pos.batch, count.pos.step, count.epoch_len) == (1, 0, 3, None)


def test_a_loader_without_length_never_holds() -> None:
    count = LoopCount()
    count.batches_begin(None)
    assert [count.batch_ended() for _ in range(3)] == [(("batch",), False)] * 3


def test_a_resume_counts_this_segment_from_where_it_was() -> None:
    count = LoopCount()
    assert count.where() == "before seg.range(...) was used"
    count.resumed_at(Position(epoch=3, batch=2, step=40, tick=41), uses_iterate=True)
    assert count.first_step and count.steps_here == 0 and count.epoch_start_kinds() == ("batch",)
    count.batches_begin(5)
    count.batch_ended()
    assert count.steps_here == 1 and count.pos.batch == 3
