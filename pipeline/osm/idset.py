"""A compact set of OSM ids: one bit per id, so a planet's relation ids fit in a few MB."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class IdSet:
    """Bitmap over non-negative ids; negative ids (unsaved JOSM data) go to a small set."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self._negative: set[int] = set()

    def add(self, osm_id: int) -> None:
        if osm_id < 0:
            self._negative.add(osm_id)
            return
        byte = osm_id >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        self._bits[byte] |= 1 << (osm_id & 7)

    def __contains__(self, osm_id: int) -> bool:
        if osm_id < 0:
            return osm_id in self._negative
        byte = osm_id >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (osm_id & 7)))

    def __iter__(self) -> Iterator[int]:
        yield from sorted(self._negative)
        if self._bits:
            bits = np.unpackbits(np.frombuffer(bytes(self._bits), dtype=np.uint8), bitorder="little")
            yield from (int(i) for i in np.flatnonzero(bits))

    def __len__(self) -> int:
        return len(self._negative) + sum(int(b).bit_count() for b in self._bits if b)

    def difference(self, other: IdSet) -> list[int]:
        return [i for i in self if i not in other]
