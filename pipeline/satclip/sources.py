"""``--imagery`` → a scene source: ``local:DIR``, ``stac:URL`` or ``gee:PROJECT`` (Earth Engine)."""

from __future__ import annotations

from pipeline.errors import BadInputError
from pipeline.satclip.scenes import SceneSource


def open_source(spec: str, collection: str = "sentinel-2-l2a", max_scenes: int = 10_000) -> SceneSource:
    kind, _, rest = spec.partition(":")
    if not rest:
        raise BadInputError(f"--imagery must be local:DIR, stac:URL or gee:PROJECT, got {spec!r}")
    if kind == "local":
        from pipeline.satclip.local import LocalScenes

        return LocalScenes(rest)
    if kind == "stac":
        from pipeline.satclip.stac import StacScenes

        return StacScenes(rest, collection=collection, max_scenes=max_scenes)
    if kind == "gee":
        from pipeline.satclip.gee import GeeScenes

        return GeeScenes(rest, collection=collection, max_scenes=max_scenes)
    raise BadInputError(f"--imagery must start with local:, stac: or gee:, got {spec!r}")
