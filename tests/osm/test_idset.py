"""IdSet: the bitmap that tracks area relations in a pass."""

from __future__ import annotations

import random

from pipeline.osm.idset import IdSet


def test_idset_matches_a_python_set() -> None:
    rng = random.Random(0)
    ids = [rng.randint(-(10**6), 10**6) for _ in range(2000)] + [10**12 + 3, 0, -1, 65535, 65536]
    s, other = IdSet(), IdSet()
    for i in ids:
        s.add(i)
    for i in ids[::3]:
        other.add(i)
    assert list(s) == sorted(set(ids)) and len(s) == len(set(ids))
    assert all(i in s for i in ids) and 10**12 + 4 not in s and 2 * 10**6 not in s
    assert s.difference(other) == sorted(set(ids) - set(ids[::3]))
