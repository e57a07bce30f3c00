"""``--imagery`` → a scene source: ``local:DIR``, ``stac:URL``; ``gee:PROJECT`` is not implemented yet."""

from __future__ import annotations

from pipeline.errors import BadInputError, ConfigError
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
        raise ConfigError(
            "gee:PROJECT is not supported by `skyscript satclip sample` yet; use stac:URL "
            "(e.g. stac:https://earth-search.aws.element84.com/v1 with --collection sentinel-2-l2a) or local:DIR"
        )
    raise BadInputError(f"--imagery must start with local:, stac: or gee:, got {spec!r}")
