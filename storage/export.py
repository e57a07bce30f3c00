"""``skyscript export --format csv``: the released SkyScript CSV layout plus the image files.

Columns ``filepath, title, title_multi_objects, similarity_<model>`` (``similarity_CLIP_openai``
for ViT-L/14 ``openai`` scores, as in the released files), file paths relative to the export
folder. Images go to ``images{2..7}/NNNNN/{key}.jpg`` (shard ``s`` to ``images{2 + s % 6}``): the
release's six image folders, which torchgeo's ``SkyScript`` class checks for, without one folder
of millions of files. CSV names follow the release
(``SkyScript_{split}_top{NN}pct_filtered_by_{model}.csv``), so ``SkyScript(root=DIR)`` finds them.
Image bytes are copied from the shard tars unchanged; the CSVs are published last.
"""

from __future__ import annotations

import csv
import json
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.errors import BadInputError
from storage.atomic import publishing
from storage.scores import column_tag, require_build, scored_shards, shard_stem
from storage.selection import check_selection_keys, read_selection
from storage.split import read_split

IMAGE_DIRS = tuple(f"images{i}" for i in range(2, 8))


def image_relpath(shard: int, key: str) -> str:
    return f"{IMAGE_DIRS[shard % len(IMAGE_DIRS)]}/{shard_stem(shard)}/{key}.jpg"


def _selection_model(out: Path, selection: str) -> str:
    side = (Path(selection) if Path(selection).suffix else out / "selections" / f"{selection}.parquet")
    info = side.with_suffix(".json")
    if info.is_file():
        return str(json.loads(info.read_text(encoding="utf-8")).get("model", "unknown"))
    models = set(scored_shards(out).values())
    return models.pop() if len(models) == 1 else "unknown"


def csv_name(selection: str, split: str, tag: str) -> str:
    m = re.fullmatch(r"top(\d+)", Path(selection).stem)
    if m:
        return f"SkyScript_{split}_top{int(m.group(1))}pct_filtered_by_{tag}.csv"
    return f"SkyScript_{split}_{Path(selection).stem}_filtered_by_{tag}.csv"


def _captions(out: Path, shards: list[int]) -> dict[str, tuple[int, str, str]]:
    found: dict[str, tuple[int, str, str]] = {}
    for s in shards:
        t = pq.read_table(out / "shards" / f"{shard_stem(s)}.parquet",
                          columns=["key", "status", "caption_single", "caption_multi"]).to_pydict()
        for k, st, c1, c2 in zip(t["key"], t["status"], t["caption_single"], t["caption_multi"], strict=True):
            if st == "ok":
                found[k] = (s, c1 or "", c2 or "")
    return found


def _copy_images(out: Path, dest: Path, shard: int, keys: set[str]) -> set[str]:
    copied: set[str] = set()
    with tarfile.open(out / "shards" / f"{shard_stem(shard)}.tar", "r") as tf:
        for m in tf:
            name = m.name.rsplit("/", 1)[-1]
            if not (m.isfile() and name.endswith(".jpg")) or name[:-4] not in keys:
                continue
            target = dest / image_relpath(shard, name[:-4])
            if not target.is_file():  # a resumed export keeps what it already wrote
                src = tf.extractfile(m)
                assert src is not None
                with publishing(target) as tmp:
                    tmp.write_bytes(src.read())
            copied.add(name[:-4])
    return copied


def export_csv(out: Path, selection: str, dest: Path) -> dict[str, tuple[Path, int]]:
    """Write the images and one CSV per split (``train`` only when no split was drawn)."""
    out, dest = Path(out), Path(dest)
    shards = require_build(out)
    sel = read_selection(out, selection)
    caps = _captions(out, shards)
    check_selection_keys(sel, set(caps), selection)
    tag = column_tag(_selection_model(out, selection))
    for d in IMAGE_DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    split = read_split(out)
    split_of: dict[str, str] = {}
    if split is not None:
        split_of = dict(zip(split["key"].to_pylist(), split["split"].to_pylist(), strict=True))
    keys = sel["key"].to_pylist()
    scores = sel["score"].to_pylist()
    by_shard: dict[int, set[str]] = {}
    for k in keys:
        by_shard.setdefault(caps[k][0], set()).add(k)
    missing: set[str] = set()
    for s, ks in sorted(by_shard.items()):
        missing |= ks - _copy_images(out, dest, s, ks)
    if missing:
        raise BadInputError(
            f"{len(missing)} selected sample(s) have no image in their shard (e.g. {sorted(missing)[:3]})"
        )
    rows: dict[str, list[list[object]]] = {}
    for k, score in zip(keys, scores, strict=True):
        name = split_of.get(k, "train") if split is not None else "train"
        if name == "buffer":
            continue
        s, c1, c2 = caps[k]
        rows.setdefault(name, []).append([image_relpath(s, k), c1, c2 or c1, f"{score:.6f}"])
    written: dict[str, tuple[Path, int]] = {}
    for name, rs in sorted(rows.items()):
        path = dest / csv_name(selection, name, tag)
        with publishing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["filepath", "title", "title_multi_objects", f"similarity_{tag}"])
            w.writerows(rs)
        written[name] = (path, len(rs))
    return written
