"""Several ``--imagery`` sources at once; the catalog decides which applies where.

``--imagery`` is repeatable: ``local:DIR`` (or a bare DIR), ``gee:PROJECT``, ``stac:URL``. A
catalog collection is usable when its source was given: every ``gee`` entry with ``gee:PROJECT``;
a ``stac`` entry with the ``stac:URL`` equal to its ``url`` (an entry without ``url`` goes with
any STAC URL). A local folder is one more candidate, at its rasters' native GSD. Per object,
:func:`pipeline.imagery.choose.plan_object` picks among them; ``read`` hands each request to the
source that serves its collection.

With local folders only, planning is exactly the single-source planner of
:func:`pipeline.chips.plan_for_source` (same chips as before this router existed).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

from pipeline.chips import plan_for_source, target_geometry
from pipeline.config import ImageryConfig, PlannerConfig
from pipeline.errors import BadInputError, ImageryError
from pipeline.imagery.catalog import Catalog, CatalogEntry, load_catalog
from pipeline.imagery.choose import Candidate, plan_object
from pipeline.records import Chip, ChipRequest, OsmObject
from pipeline.seams import Coverage, ImagerySource

SCHEMES = ("local", "gee", "stac")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$")  # 2+ letters: "C:\\dir" stays a path


@dataclass(frozen=True)
class ImagerySpec:
    scheme: str  # local | gee | stac
    value: str  # folder, project, or API root URL

    def __str__(self) -> str:
        return f"{self.scheme}:{self.value}"


def parse_spec(spec: str) -> ImagerySpec:
    """``local:DIR`` / bare ``DIR`` / ``gee:PROJECT`` / ``stac:URL``, with one-line errors."""
    text = str(spec or "").strip()
    if not text:
        raise BadInputError("--imagery is empty; pass local:DIR, gee:PROJECT or stac:URL")
    m = _SCHEME.match(text)
    if m is None or Path(text).exists():
        return ImagerySpec("local", text)
    scheme, rest = m.group(1).lower(), m.group(2).strip()
    if scheme in ("http", "https"):
        raise BadInputError(f"--imagery {text!r}: a URL needs a scheme: stac:{text} for a STAC API")
    if scheme not in SCHEMES:
        raise BadInputError(f"--imagery {text!r}: unknown scheme {scheme!r}; use local:DIR, gee:PROJECT or stac:URL")
    if not rest:
        what = {"local": "a folder, e.g. local:/data/rasters", "gee": "a Cloud project id, e.g. gee:my-project",
                "stac": "an API root, e.g. stac:https://earth-search.aws.element84.com/v1"}[scheme]
        raise BadInputError(f"--imagery {scheme}: needs {what}")
    return ImagerySpec(scheme, rest)


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


class ImageryRouter:
    """Implements :class:`pipeline.seams.ImagerySource` over several sources and the catalog."""

    name = "router"

    def __init__(
        self,
        specs: Sequence[str],
        cfg: ImageryConfig | None = None,
        *,
        catalog: Catalog | None = None,
        sources: dict[str, ImagerySource] | None = None,
        connect: bool = True,
    ) -> None:
        """``connect=False``: no request at start-up (planning only: Earth Engine is not contacted)."""
        self.cfg = cfg or ImageryConfig()
        self.connect = connect
        self.specs = [parse_spec(s) for s in specs]
        if not self.specs:
            raise BadInputError("pass at least one --imagery source (local:DIR, gee:PROJECT or stac:URL)")
        self.catalog = catalog or load_catalog(self.cfg.catalog)
        self.sources: dict[str, ImagerySource] = {}  # by collection id
        self.entries: dict[str, CatalogEntry] = {}
        self.locals: list[tuple[str, ImagerySource]] = []
        given = sources or {}
        for i, spec in enumerate(self.specs):
            if spec.scheme == "local":
                name = "local" if sum(s.scheme == "local" for s in self.specs) == 1 else f"local{i}"
                self.locals.append((name, given.get(str(spec)) or _make_local(spec.value)))
            elif spec.scheme == "gee":
                self._add(spec, [e for e in self.catalog.for_source("gee")], given)
            else:
                entries = [e for e in self.catalog.for_source("stac") if e.url is None or _same_url(e.url, spec.value)]
                if not entries:
                    raise BadInputError(
                        f"--imagery {spec}: no catalog collection is served by this STAC API; add an entry "
                        f"with source: stac and url: {spec.value} to a --catalog file"
                    )
                self._add(spec, entries, given)
        self.pool: list[Candidate] = [
            Candidate(e.id, e.source, e.gsd, e.coverage, e.dates, "", i)
            for i, e in enumerate(self.catalog.entries) if e.id in self.entries
        ]

    def _add(self, spec: ImagerySpec, entries: list[CatalogEntry], given: dict[str, ImagerySource]) -> None:
        fresh = [e for e in entries if e.id not in self.entries]
        if not fresh:
            return
        src = given.get(str(spec)) or _make_remote(spec, fresh, self.cfg, self.connect)
        for e in fresh:
            self.entries[e.id] = e
            self.sources[e.id] = src

    # -- ImagerySource ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        remote = {id(s): s for s in self.sources.values()}
        return {
            "name": self.name,
            "specs": [str(s) for s in self.specs],
            "sources": [s.describe() for _n, s in self.locals] + [s.describe() for s in remote.values()],
            "collections": [self.entries[c.collection].describe() for c in self.pool],
            "choose": self.cfg.choose,
            "images_per_object": self.cfg.images_per_object,
        }

    def identity(self) -> dict[str, Any]:
        """What decides the chips (hashed into a build's fingerprint): sources by content, collections."""
        from pipeline.identity import source_identity

        return {
            "kind": self.name,
            "local": [source_identity(src) for _n, src in self.locals],
            "remote": [str(s) for s in self.specs if s.scheme != "local"],
            "collections": [self.entries[c.collection].describe() for c in self.pool],
            "choose": self.cfg.choose,
            "images_per_object": self.cfg.images_per_object,
        }

    def coarsest_gsd(self) -> float | None:
        """The coarsest GSD any chip is cut at before framing (bounds the build's neighbour reach)."""
        gsds = [c.gsd for c in self.pool]
        for _name, src in self.locals:
            coarsest = getattr(src, "coarsest_gsd", None)
            if not callable(coarsest):
                return None  # unknown: the build assumes the objects' max GSD
            gsds.append(float(coarsest()))
        return max(gsds) if gsds else None

    def coverage(self, geometry: BaseGeometry) -> list[Coverage]:
        out = [Coverage(c.collection, "", c.gsd, "", None) for c in self.pool
               if c.coverage is None or c.coverage.covers(geometry)]
        for name, src in self.locals:
            out += [Coverage(name, c.image_id, c.native_gsd, c.crs, c.acquired) for c in src.coverage(geometry)]
        return sorted(out, key=lambda c: c.native_gsd)

    def footprint(self, image_id: str) -> BaseGeometry | None:
        for _name, src in self.locals:
            fp = getattr(src, "footprint", None)
            found = fp(image_id) if callable(fp) else None
            if found is not None:
                return found
        return None

    @property
    def local_only(self) -> bool:
        return not self.pool and len(self.locals) == 1

    def plan(
        self, obj: OsmObject, planner: PlannerConfig, seed: int, *, max_gsd: float | None, date: str | None = None
    ) -> list[ChipRequest] | str:
        """The chips of one object (see :mod:`pipeline.imagery.choose`), or why there are none."""
        if self.local_only:
            planned = plan_for_source(obj, self.locals[0][1], planner, seed, max_gsd=max_gsd)
            return planned if isinstance(planned, str) else [planned]
        pool = list(self.pool)
        target = target_geometry(obj, seed)
        if target is not None:
            for name, src in self.locals:
                for cov in src.coverage(target)[:1]:  # the finest covering raster of each folder
                    pool.append(Candidate(name, "local", cov.native_gsd, None, (None, None), cov.image_id, -1))
        today = _dt.date.today().isoformat()  # a collection starting in the future has no image yet
        return plan_object(obj, pool, planner, self.cfg, seed, max_gsd=max_gsd, date=date, today=today,
                           footprints=self.footprint)

    def read(self, request: ChipRequest) -> Chip:
        src = self.sources.get(request.collection)
        if src is None:
            for name, local in self.locals:
                if request.collection in (name, "local") or (self.local_only and request.source in ("", "local")):
                    return local.read(request)
            raise ImageryError(f"no --imagery source serves collection {request.collection!r} (key {request.key!r})")
        return src.read(request)


def _make_local(root: str) -> ImagerySource:
    from pipeline.imagery.local import LocalRasterSource

    return LocalRasterSource(root)


def _make_remote(spec: ImagerySpec, entries: list[CatalogEntry], cfg: ImageryConfig, connect: bool) -> ImagerySource:
    if spec.scheme == "stac":
        from pipeline.imagery.stac import StacSource

        return StacSource(spec.value, entries, max_nodata_frac=cfg.max_nodata_frac)
    from pipeline.imagery.gee import GeeSource

    return GeeSource(spec.value, entries, cfg, lazy=not connect)
