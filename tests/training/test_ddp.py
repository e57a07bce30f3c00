"""torchrun with two CPU processes (gloo): the DDP path of the trainer, end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from storage.selection import FilterConfig, filter_scores
from tests.scoring.shardmaker import TINY, TINY_CFG, make_dataset
from tests.training.test_skyclip import _scored

REPO = Path(__file__).resolve().parents[2]
RUNNER = """
import json, sys
from pathlib import Path
import open_clip
open_clip.add_model_config(Path(sys.argv[1]))
from training.skyclip.train import SkyClipConfig, train_skyclip
cfg = SkyClipConfig(data=sys.argv[2], out=sys.argv[3], selection="top100", model="tiny-score-test",
                    pretrained=sys.argv[4], epochs=2, batch_size=8, lr=2e-3, warmup=1, device="cpu", workers=0)
res = train_skyclip(cfg)
import os
Path(sys.argv[3], f"rank{os.environ['RANK']}.json").write_text(json.dumps({"world": res["world_size"],
    "per": res["per_process_batch"], "steps": res["steps_per_epoch"], "ckpts": res["checkpoints"]}))
"""


@pytest.mark.slow
def test_torchrun_two_processes(tiny_ckpt: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    data = tmp_path / "data"
    samples = make_dataset(data, n=32, per_shard=16)
    _scored(data, samples, 16)
    filter_scores(data, FilterConfig(top=100))
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(script),
         str(cfg_dir), str(data), str(tmp_path / "run"), str(tiny_ckpt)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads((tmp_path / "run" / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert len(results) == 2 and all(x["world"] == 2 and x["per"] == 4 for x in results)
    # 32 samples / 2 ranks / 4 per rank = 4 steps per epoch; only rank 0 writes checkpoints.
    assert {x["steps"] for x in results} == {4}
    assert sorted(len(x["ckpts"]) for x in results) == [0, 2]
    assert (tmp_path / "run" / "checkpoints" / "epoch_2.pt").is_file()
