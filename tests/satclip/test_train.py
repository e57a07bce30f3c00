"""Tiny training runs: the loss goes down, the checkpoint loads with training.satclip.load, resume works."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import training.satclip as satclip
from pipeline.errors import InputFileError, OutputConflictError
from pipeline.satclip.local import LocalScenes
from pipeline.satclip.sampler import SampleConfig, sample
from tests.satclip.synth import X0, Y0, write_scene
from training.satclip.train import TrainConfig, train
from training.satclip.vision import build_vision, moco_weights


def tiny(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = TrainConfig(
        data=str(data), out=str(out), vision="vit", legendre=10, epochs=15, batch_size=8, accumulate=1, lr=3e-3,
        image_size=64, vit_patch=32, vit_width=32, vit_layers=1, capacity=32, embed_dim=16, augment=False,
        val_fraction=0.0, seed=0,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("satclip_train")
    # scenes on four continents (L = 10 harmonics resolve ~2000 km, not neighbouring scenes)
    places = [("EPSG:32632", X0, Y0), ("EPSG:32618", 500_000, 4_500_000), ("EPSG:32755", 300_000, 6_300_000),
              ("EPSG:32636", 500_000, 1_000_000)]  # fmt: skip
    for k, (crs, x0, y0) in enumerate(places):
        write_scene(root / "scenes" / f"s{k}.tif", 300, 300, seed=20 + k, x0=x0, y0=y0, crs=crs)
    sample(SampleConfig(n=8, seed=0, by="scene"), LocalScenes(root / "scenes"), root / "data")
    return root / "data"


def _check_run(cfg: TrainConfig) -> dict:
    result = train(cfg)
    first, last = result["initial_eval_loss"], result["epochs"][-1]["eval_loss"]
    assert last < first - 0.1, (first, [e["eval_loss"] for e in result["epochs"]])
    enc = satclip.load(result["checkpoint"])
    pts = torch.tensor([[9.0, 50.5], [-70.0, -20.0]], dtype=torch.float64)
    model_state = torch.load(result["checkpoint"], weights_only=False)["state_dict"]
    assert "model.location.nnet.layers.0.weight" in model_state and "model.nnet.layers.0.weight" in model_state
    assert "model.visual.conv1.weight" in model_state and "model.logit_scale" in model_state
    assert enc(pts).shape == (2, cfg.embed_dim) and enc.cfg.sh_quirk == cfg.sh_quirk
    return result


@pytest.mark.slow
def test_tiny_run_lowers_loss_and_resumes(synth_data: Path, tmp_path: Path) -> None:
    cfg = tiny(synth_data, tmp_path / "run")
    result = _check_run(cfg)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert sum("epoch_summary" in ln for ln in lines) == cfg.epochs
    # resume: the same flags with more epochs continue from the last epoch
    more = train(replace(cfg, epochs=cfg.epochs + 1))
    assert more["start_epoch"] == cfg.epochs and len(more["epochs"]) == 1
    before = torch.load(result["checkpoint"], weights_only=False)
    assert before["epoch"] == cfg.epochs and json.dumps(before["hyper_parameters"])
    with pytest.raises(OutputConflictError):
        train(replace(cfg, legendre=40))


@pytest.mark.slow
@pytest.mark.shared_data
def test_tiny_run_on_real_sentinel2_patches(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "imagery" / "sentinel2"
    data = tmp_path / "data"
    # the real 12-band UTM patches are one-window scenes: sampling them gives S2-100K copies
    files = sorted(src.glob("*patch_*.tif"))
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for f in files:
        (scenes / f.name).symlink_to(f)
    sample(SampleConfig(n=8, seed=0, by="scene"), LocalScenes(scenes), data)
    _check_run(tiny(data, tmp_path / "run", sh_quirk=True, lr=1e-3, epochs=20))


@pytest.mark.slow
def test_torchgeo_backbones_build_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("moco_resnet18", "moco_resnet50", "moco_vit16"):
        assert moco_weights(name).meta["in_chans"] == 13
    net = build_vision("moco_resnet18", 32, pretrained=False)
    out = net(torch.zeros(2, 13, 64, 64))
    assert out.shape == (2, 32)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    vit = build_vision("moco_vit16", 32, image_size=256, pretrained=False)
    assert {n for n, p in vit.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    assert vit.patch_embed.proj.in_channels == 13
    # no weights file and no network: a clear error, not a hang or a traceback from deep inside
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(InputFileError, match="--vision vit"):
        build_vision("moco_resnet18", 32, pretrained=True)


@pytest.mark.slow
def test_moco_architecture_trains_one_epoch(synth_data: Path, tmp_path: Path) -> None:
    cfg = tiny(synth_data, tmp_path / "run", vision="moco_resnet18", pretrained=False, epochs=1)
    result = train(cfg)
    state = torch.load(result["checkpoint"], weights_only=False)
    assert state["hyper_parameters"]["vision_layers"] == "moco_resnet18"
    assert state["hyper_parameters"]["in_channels"] == 13 and "model.visual.fc.weight" in state["state_dict"]


def test_bad_data(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"index\.csv"):
        train(tiny(tmp_path / "nothing", tmp_path / "run"))
    data = tmp_path / "d"
    (data / "images").mkdir(parents=True)
    write_scene(data / "images" / "patch_0.tif", 256, 256, count=4)
    write_scene(data / "images" / "patch_1.tif", 256, 256, count=4)
    (data / "index.csv").write_text("fn,lon,lat\npatch_0.tif,9.0,50.0\npatch_1.tif,9.1,50.0\n")
    with pytest.raises(InputFileError, match="4 bands"):
        train(tiny(data, tmp_path / "run"))
