"""Up-front validation of the ``build-skyscript`` parameters (no Prefect import here).

A deployment run receives its parameters as JSON from the UI or ``prefect deployment run -p``;
every one is checked before any work starts, and a bad one fails the run at once with a
message that names it (``parameter max_objects: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig, load_config
from pipeline.errors import BadInputError, SkyScriptError
from pipeline.executors import check_executor
from pipeline.geo import BBox

TOP_CHOICES = (20, 30, 50)  # SkyScript's released top fractions; any 1..99 is accepted


@dataclass(frozen=True)
class BuildParams:
    """The validated parameters of one build run (what the tasks receive)."""

    osm: str
    imagery: str | tuple[str, ...]
    out: str
    bbox: BBox | None
    cfg: BuildConfig
    executor: str
    tag_model: str | None
    overwrite: bool
    score_model: str | None
    top: tuple[int, ...]


class ParameterError(BadInputError):
    """A flow parameter is invalid; the message names it."""


def _fail(name: str, message: str) -> ParameterError:
    return ParameterError(f"parameter {name}: {message}")


def _text(name: str, value: Any, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _fail(name, "is required (got nothing)")
        return None
    if not isinstance(value, str):
        raise _fail(name, f"must be a string, got {type(value).__name__} {value!r}")
    return value.strip()


def _imagery(value: Any) -> str | tuple[str, ...]:
    """One spec, or a list of them (the catalog router picks per object, as ``--imagery`` repeated)."""
    specs = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else None
    if not specs or not all(isinstance(s, str) and s.strip() for s in specs):
        raise _fail("imagery", f"must be a source spec such as local:DIR (or a list of them), got {value!r}")
    specs = [s.strip() for s in specs]
    from pipeline.imagery import make_imagery_source

    try:  # parses every spec and indexes local folders; no request to a remote service yet
        make_imagery_source(specs[0] if len(specs) == 1 else tuple(specs), connect=False)
    except SkyScriptError as exc:
        raise _fail("imagery", str(exc)) from None
    return specs[0] if len(specs) == 1 else tuple(specs)


def _osm(value: Any) -> str:
    text = _text("osm", value)
    assert text is not None
    scheme, sep, rest = text.partition(":")
    if sep and scheme in ("overpass", "pbf"):
        if scheme == "pbf" and not Path(rest).is_file():
            raise _fail("osm", f"file not found: {rest!r}")
        return text
    if not Path(text).is_file():
        raise _fail("osm", f"file not found: {text!r}; pass an .osm.pbf/.osm/.osm.bz2/objects.parquet file "
                    "or overpass:URL")
    return text


def _positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, f"must be a whole number, got {value!r}")
    if value <= 0:
        raise _fail(name, f"must be positive, got {value}")
    return value


def _tops(value: Any) -> tuple[int, ...]:
    items = [value] if isinstance(value, int) else value
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise _fail("top", f"must be a percentage or a list of them (e.g. [20, 30, 50]), got {value!r}")
    out = []
    for t in items:
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= 99:
            raise _fail("top", f"every fraction must be a whole percentage in 1..99, got {t!r}")
        out.append(t)
    return tuple(sorted(set(out)))


def validate(
    *,
    osm: Any,
    imagery: Any,
    out: Any,
    bbox: Any = None,
    max_objects: Any = None,
    seed: Any = None,
    config: Any = None,
    preset: Any = "default",
    executor: Any = "local",
    score_model: Any = None,
    top: Any = TOP_CHOICES,
    tag_model: Any = None,
    overwrite: Any = False,
) -> BuildParams:
    """Check every parameter; raise :class:`ParameterError` naming the first bad one."""
    osm_spec = _osm(osm)
    imagery_spec = _imagery(imagery)
    out_dir = _text("out", out)
    assert out_dir is not None
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise _fail("out", f"{out_dir!r} exists and is not a folder")
    box_text = _text("bbox", bbox, required=False)
    try:
        box = BBox.parse(box_text) if box_text else None
    except SkyScriptError as exc:
        raise _fail("bbox", str(exc)) from None
    n = _positive("max_objects", max_objects)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _fail("seed", f"must be a non-negative whole number, got {seed!r}")
    ex = _text("executor", executor) or "local"
    try:
        check_executor(ex)  # a dask:ADDR with no scheduler there fails here, before any work
    except SkyScriptError as exc:
        raise _fail("executor", str(exc)) from None
    if not isinstance(overwrite, bool):
        raise _fail("overwrite", f"must be true or false, got {overwrite!r}")
    config_path = _text("config", config, required=False)
    preset_name = _text("preset", preset, required=False) or "default"
    try:
        cfg = load_config(config_path, preset=preset_name, seed=seed, max_objects=n)
    except SkyScriptError as exc:
        name = "preset" if config_path is None or "preset" in str(exc) else "config"
        raise _fail(name, str(exc)) from None
    model = _text("score_model", score_model, required=False)
    tops = _tops(top)
    if model is not None:
        from flows.scoring import scoring_available

        missing = scoring_available()
        if missing:
            raise _fail("score_model", f"{missing}; leave score_model null to build without scoring")
    return BuildParams(
        osm=osm_spec, imagery=imagery_spec, out=out_dir, bbox=box, cfg=cfg, executor=ex,
        tag_model=_text("tag_model", tag_model, required=False), overwrite=overwrite,
        score_model=model, top=tops,
    )
