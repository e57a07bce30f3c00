"""The report's charts as PNG bytes (matplotlib, Agg backend: no display needed).

Each function takes plain arrays/counters and returns one PNG, so the HTML page can embed it
and stay a single self-contained file that opens offline.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
from filelock import FileLock

from pipeline.cache import cache_dir

WIDTH_IN = 10.0  # figures are shown at most 1000 px wide (see the page's CSS)
LAND_STEP = 60  # the land mask's 1/120° grid sampled every 60 cells: a 0.5° world map background


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def coarse_land(cache: Path | None = None) -> np.ndarray:
    """A 360×720 land (True) / ocean raster of the world, made once from the land mask and cached."""
    folder = cache or cache_dir("report", create=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "land_0.5deg.npy"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return np.load(path)
        from pipeline.osm.landmask import iter_mask_rows

        parts = []
        for start, chunk, _shape in iter_mask_rows(600):
            rows = [i for i in range(chunk.shape[0]) if (start + i) % LAND_STEP == LAND_STEP // 2]
            parts.append(~chunk[rows][:, LAND_STEP // 2 :: LAND_STEP])  # the package stores "is ocean"
        land = np.concatenate(parts)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, land)
        tmp.replace(path)
        return land


def world_map(lon: np.ndarray, lat: np.ndarray, land: np.ndarray) -> bytes:
    """Sample density on a world map (1° cells, log colour), plus a zoom on the samples' extent."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat = lon[ok], lat[ok]
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(WIDTH_IN, 3.8), gridspec_kw={"width_ratios": [2.2, 1]},
                                   layout="constrained")
    ax.imshow(land, extent=(-180, 180, -90, 90), cmap="Greys", vmin=-1.5, vmax=2, interpolation="nearest")
    if len(lon):
        counts, xe, ye = np.histogram2d(lon, lat, bins=(360, 180), range=((-180, 180), (-90, 90)))
        masked = np.ma.masked_equal(counts.T, 0)
        mesh = ax.pcolormesh(xe, ye, masked, cmap="inferno_r", norm=LogNorm(vmin=1, vmax=max(2, counts.max())))
        fig.colorbar(mesh, ax=ax, fraction=0.025, pad=0.01, label="samples per 1° cell")
        ax.scatter(lon, lat, s=6, c="#d62728", marker="o", linewidths=0)  # small areas stay visible
        zoom.hexbin(lon, lat, gridsize=25, mincnt=1, cmap="viridis")
        pad_x = max(1e-3, (lon.max() - lon.min()) * 0.05)
        pad_y = max(1e-3, (lat.max() - lat.min()) * 0.05)
        zoom.set_xlim(lon.min() - pad_x, lon.max() + pad_x)
        zoom.set_ylim(lat.min() - pad_y, lat.max() + pad_y)
    ax.set(xlim=(-180, 180), ylim=(-90, 90), xlabel="longitude", ylabel="latitude", title="sample density")
    zoom.set(xlabel="longitude", title="extent of the samples")
    zoom.ticklabel_format(useOffset=False)
    zoom.tick_params(axis="x", labelrotation=30)
    return _png(fig)


def tag_frequency(tag_counts: Counter[str], top: int = 25) -> bytes:
    plt = _plt()
    items = tag_counts.most_common(top)[::-1]
    fig, ax = plt.subplots(figsize=(WIDTH_IN, max(2.0, 0.28 * len(items) + 0.8)))
    if items:
        ax.barh([k[:60] for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.set_xscale("log")
    ax.set(xlabel="samples with the tag visible (log)", title=f"the {len(items)} most frequent visible tags")
    return _png(fig)


def similarity_histogram(scores: np.ndarray, cuts: dict[int, float], model: str | None) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.2))
    ax.hist(scores, bins=60, color="#55a868")
    for (pct, value), colour in zip(sorted(cuts.items()), ("#c44e52", "#dd8452", "#8172b3"), strict=False):
        ax.axvline(value, color=colour, linestyle="--", label=f"top {pct} %: score ≥ {value:.3f}")
    ax.legend(loc="upper left")
    ax.set(xlabel=f"image-caption cosine similarity ({model or 'unknown model'})", ylabel="samples",
           title="similarity of each pair, with the filter cuts")
    return _png(fig)


def gsd_and_collections(gsd: np.ndarray, collections: Counter[str]) -> bytes:
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH_IN, 3.0))
    values = gsd[np.isfinite(gsd)]
    if len(values):
        left.hist(values, bins=min(40, max(5, len(set(np.round(values, 3))))), color="#4c72b0")
    left.set(xlabel="ground sample distance (m)", ylabel="samples", title="GSD")
    names = [n for n, _ in collections.most_common(12)]
    right.barh(names[::-1], [collections[n] for n in names][::-1], color="#dd8452")
    right.set(xlabel="samples", title="imagery collections")
    return _png(fig)
