"""heap.Settler: survivors frozen, so a full collection no longer walks them; settles spaced out."""

import gc
import weakref

import pytest
from l2lb_agent import heap


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


class Cell:
    """A node of a reference cycle (weakly referenceable: we can see it go)."""

    def __init__(self) -> None:
        self.me = self


def test_settle_collects_cycles_then_freezes_the_survivors():
    kept = [{"i": i} for i in range(10_000)]
    gone = weakref.ref(Cell())  # unreachable, but only the collector can free a cycle
    assert gone() is not None
    heap.Settler().settle(0.0)
    assert gone() is None  # collected before the freeze, not frozen forever
    assert gc.get_freeze_count() >= len(kept)
    assert not any(obj is kept for obj in gc.get_objects())  # frozen: no generation walks it


def test_due_settles_at_most_once_per_interval():
    settler = heap.Settler(every=300.0)
    settler.due(1000.0)
    first = gc.get_freeze_count()
    assert first > 0
    gc.unfreeze()
    settler.due(1299.0)
    assert gc.get_freeze_count() == 0  # too soon: nothing frozen again
    settler.due(1300.0)
    assert gc.get_freeze_count() > 0
