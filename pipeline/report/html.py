"""The report page: one HTML file, images embedded as data URIs, readable without sideways scrolling."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from PIL import Image

from pipeline.report import figures
from pipeline.report.data import TAG_THRESHOLDS, ReportData, redact

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
main{max-width:1040px;margin:0 auto;padding:16px 20px 48px}
h1{font-size:1.6rem;margin:.4rem 0}
h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #d7dbe2;padding-bottom:.2rem}
img.fig{width:100%;height:auto;display:block;background:#fff;border:1px solid #e3e6eb}
table{border-collapse:collapse;width:100%;table-layout:fixed;background:#fff}
td,th{border:1px solid #e3e6eb;padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#eef1f5}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.card{background:#fff;border:1px solid #e3e6eb;padding:8px;overflow-wrap:anywhere}
.card img{width:100%;height:auto;image-rendering:pixelated;display:block}
.card p{margin:.4rem 0 0;font-size:.9rem}.card .meta{color:#5b6573;font-size:.8rem}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.kpi{background:#fff;border:1px solid #e3e6eb;padding:8px}.kpi b{display:block;font-size:1.3rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid #e3e6eb;padding:8px;font-size:.8rem}
.note{color:#5b6573}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str, cls: str = "fig") -> str:
    return f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _thumb(jpeg: bytes, size: int = 256) -> str:
    """A chip as an embedded JPEG, enlarged (nearest) to ``size`` px so small chips are visible."""
    im = Image.open(io.BytesIO(jpeg)).convert("RGB")
    scale = max(1, size // max(im.size))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return f'<img alt="chip" src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _kpis(d: ReportData) -> str:
    summary = d.run.get("summary") or {}
    items = [
        ("samples written", d.n_ok),
        ("failed rows", d.n_rows - d.n_ok),
        ("OSM objects", d.run.get("n_objects", "?")),
        ("shards", f"{summary.get('shards_done', '?')}/{summary.get('shards_total', d.run.get('n_shards', '?'))}"),
        ("distinct visible tags", len(d.tag_counts)),
        ("scored", "yes" if d.scores is not None else "no"),
    ]
    return '<div class="kpis">' + "".join(f'<div class="kpi"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in items) + "</div>"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(d: ReportData, land: Any) -> str:
    """The whole page as a string."""
    parts = [f"<h1>SkyScript dataset report</h1><p class='note'>{_e(d.out)}</p>", _kpis(d)]
    parts.append("<h2 id='map'>Where the samples are</h2>")
    parts.append(_img(figures.world_map(d.lon, d.lat, land), "world map of sample density"))
    parts.append("<h2 id='tags'>Tag frequency</h2>")
    parts.append(_table(["tags reaching", *[f"≥ {n:,} samples" for n in TAG_THRESHOLDS]],
                        [["number of tags", *[d.tags_reaching(n) for n in TAG_THRESHOLDS]]]))
    parts.append(_img(figures.tag_frequency(d.tag_counts), "tag frequency"))
    parts.append("<h2 id='examples'>Examples</h2><div class='cards'>")
    for ex in d.examples:
        gsd = f"{ex.gsd:.2f} m" if ex.gsd is not None else "?"
        parts.append(f"<div class='card'>{_thumb(ex.jpeg)}<p>{_e(ex.caption_single)}</p>"
                     f"<p class='meta'>{_e(ex.caption_multi)}</p><p class='meta'>{_e(ex.key)} · {_e(gsd)} · "
                     f"{_e(ex.collection)}</p></div>")
    parts.append("</div>")
    parts.append("<h2 id='similarity'>Image–caption similarity</h2>")
    if d.scores is not None and len(d.scores):
        parts.append(_img(figures.similarity_histogram(d.scores, d.cut_scores(), d.score_model),
                          "similarity histogram"))
    else:
        parts.append("<p class='note'>Not scored yet: run <code>skyscript score OUT</code>, then re-run the "
                     "report for the similarity histogram and the 20/30/50 % cuts.</p>")
    parts.append("<h2 id='imagery'>GSD and collections</h2>")
    parts.append(_img(figures.gsd_and_collections(d.gsd, d.collections), "GSD and collection mix"))
    parts.append("<h2 id='failures'>Failure reasons</h2>")
    if d.failures:
        parts.append(_table(["reason", "rows", "example message"],
                            [[k, v, d.failure_examples.get(k, "")] for k, v in d.failures.most_common()]))
    else:
        parts.append("<p class='note'>No failed rows.</p>")
    parts.append("<h2 id='config'>Run configuration and versions</h2>")
    versions = d.run.get("versions") or {}
    parts.append(_table(["package", "version"], [[k, v] for k, v in sorted(versions.items())]))
    shown = {k: v for k, v in d.run.items() if k not in ("versions",)}
    parts.append(f"<pre>{_e(json.dumps(redact(shown), indent=2, sort_keys=True, default=str))}</pre>")
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>SkyScript report: {_e(d.out)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
