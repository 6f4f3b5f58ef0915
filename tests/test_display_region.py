"""Dirty-rectangle bookkeeping: exact coverage, no overlap, few rectangles."""

from hypothesis import given, settings
from hypothesis import strategies as st

from xend_vfb.display.region import MAX_RECTS, DirtyRegion, intersect

rects = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 25), st.integers(0, 25))


def pixels(rs):
    return {(x + i, y + j) for x, y, w, h in rs for i in range(w) for j in range(h)}


def assertDisjoint(rs):
    for i, a in enumerate(rs):
        for b in rs[i + 1 :]:
            assert intersect(a, b) is None, (a, b)


@settings(max_examples=200, deadline=None)
@given(st.lists(rects, max_size=12))
def test_added_rectangles_are_covered_without_overlap(added):
    region = DirtyRegion()
    for r in added:
        region.add(r)
    kept = region.rects()
    assertDisjoint(kept)
    assert pixels(kept) == pixels(added)


@settings(max_examples=200, deadline=None)
@given(st.lists(rects, max_size=12), rects)
def test_take_splits_at_the_area(added, area):
    region = DirtyRegion()
    for r in added:
        region.add(r)
    before = pixels(region.rects())
    taken = region.take(area)
    assertDisjoint(taken)
    inside = pixels([area])
    assert pixels(taken) == before & inside
    assert pixels(region.rects()) == before - inside


def test_merges_contained_and_adjacent():
    region = DirtyRegion()
    region.add((0, 0, 10, 10))
    region.add((2, 2, 3, 3))
    region.add((10, 0, 5, 10))
    region.add((0, 0, 0, 5))
    assert region.rects() == [(0, 0, 15, 10)]


def test_many_small_changes_collapse_into_their_bounding_box():
    region = DirtyRegion()
    for i in range(MAX_RECTS):
        region.add((i * 3, i * 2, 1, 1))
    assert len(region.rects()) == MAX_RECTS
    region.add((500, 500, 1, 1))
    assert region.rects() == [(0, 0, 501, 501)]
    assert region.take((0, 0, 1000, 1000)) == [(0, 0, 501, 501)]
    assert not region
