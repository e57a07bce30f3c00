"""``skyscript filter`` on millions of scored rows, start-up included, against a bare pandas read + sort.

Writes a dataset folder holding only what the filter reads: finished-shard markers and score files
(``--rows`` rows over ``--files`` shards, scores rounded to 3 decimals so ties are everywhere).
Then, each as a fresh process (so interpreter and import time count for both):

- ``pandas``: ``pd.read_parquet`` of every score file, concat, ``sort_values(score desc, key asc)``,
  head(n) — the bare minimum a script would do (no output written);
- ``skyscript filter OUT --top 30``: the CLI, writing ``selections/top30.parquet`` and its JSON.

Both keep the same rows (checked).

    .venv/bin/python bench/bench_filter.py [--rows N] [--files N] [--top P]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

PANDAS = """
import sys, glob
import pandas as pd
files = sorted(glob.glob(sys.argv[1] + "/scores/*.parquet"))
df = pd.concat([pd.read_parquet(f, columns=["key", "score_single"]) for f in files], ignore_index=True)
n = (len(df) * int(sys.argv[2]) * 2 + 100) // 200
kept = df.sort_values(["score_single", "key"], ascending=[False, True]).head(n)
kept[["key"]].to_parquet(sys.argv[3])
"""


def make(out: Path, rows: int, files: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (out / "shards").mkdir(parents=True)
    (out / "scores").mkdir()
    per = rows // files
    for s in range(files):
        stem = f"{s:05d}"
        (out / "shards" / f"{stem}_stats.json").write_text("{}")
        ids = np.arange(s * per, (s + 1) * per)
        keys = pa.array([f"w{i}" for i in rng.permutation(ids)])
        score = np.round(rng.normal(0.25, 0.04, per), 3).astype(np.float32)
        t = pa.table({"key": keys, "score_single": score, "score_multi": score,
                      "model": pa.array(["ViT-L-14:openai"] * per)})
        pq.write_table(t, out / "scores" / f"{stem}.parquet")
        (out / "scores" / f"{stem}_stats.json").write_text(json.dumps({"model": "ViT-L-14:openai"}))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{cmd[:3]} failed: {r.stderr[-2000:]}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_filter_"))
    try:
        out = tmp / "out"
        t0 = time.perf_counter()
        make(out, args.rows, args.files)
        print(f"wrote {args.rows:,} scores in {args.files} files in {time.perf_counter() - t0:.1f} s")
        py = sys.executable
        skyscript = [py, "-c", "from pipeline.cli import main; main()", "filter", str(out), "--top", str(args.top)]
        t_pd = min(timed([py, "-c", PANDAS, str(out), str(args.top), str(tmp / "pd.parquet")])
                   for _ in range(args.repeats))
        t_ss = min(timed(skyscript) for _ in range(args.repeats))
        t_startup = min(timed([py, "-c", "from pipeline.cli import main; main()", "--help"])
                        for _ in range(args.repeats))
        ours = pq.read_table(out / "selections" / f"top{args.top:02d}.parquet")["key"].to_pylist()
        ref = pq.read_table(tmp / "pd.parquet")["key"].to_pylist()
        assert ours == ref, "skyscript filter and pandas kept different rows"
        res = {"rows": args.rows, "files": args.files, "top": args.top, "kept": len(ours),
               "pandas_s": t_pd, "skyscript_filter_s": t_ss, "cli_startup_s": t_startup, "ratio": t_ss / t_pd}
        print(f"pandas read + sort (fresh process):        {t_pd:6.2f} s")
        print(f"skyscript filter --top {args.top} (fresh process): {t_ss:6.2f} s", end="")
        print(f"   (CLI start-up alone {t_startup:.2f} s)")
        print(f"ratio skyscript/pandas: {t_ss / t_pd:.2f}   kept {len(ours):,} rows, identical to pandas' top rows")
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
