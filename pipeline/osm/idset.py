"""A compact set of OSM ids: one bit per id in 64 Ki-id pages, allocated on first use.

A planet's ~20 M relation ids fit in a few MB, and sparse or huge ids (renumbered or
merged files) only cost the pages they touch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_PAGE_BITS = 16
_PAGE_IDS = 1 << _PAGE_BITS
_MASK = _PAGE_IDS - 1


class IdSet:
    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}
        self._count = 0

    def add(self, osm_id: int) -> None:
        page_no, offset = osm_id >> _PAGE_BITS, osm_id & _MASK  # works for negative ids too
        page = self._pages.get(page_no)
        if page is None:
            page = self._pages[page_no] = bytearray(_PAGE_IDS >> 3)
        bit = 1 << (offset & 7)
        if not page[offset >> 3] & bit:
            page[offset >> 3] |= bit
            self._count += 1

    def __contains__(self, osm_id: int) -> bool:
        page = self._pages.get(osm_id >> _PAGE_BITS)
        offset = osm_id & _MASK
        return page is not None and bool(page[offset >> 3] & (1 << (offset & 7)))

    def __iter__(self) -> Iterator[int]:
        for page_no in sorted(self._pages):
            bits = np.unpackbits(np.frombuffer(bytes(self._pages[page_no]), dtype=np.uint8), bitorder="little")
            base = page_no << _PAGE_BITS
            yield from (base + int(i) for i in np.flatnonzero(bits))

    def __len__(self) -> int:
        return self._count

    def difference(self, other: IdSet) -> list[int]:
        return [i for i in self if i not in other]
