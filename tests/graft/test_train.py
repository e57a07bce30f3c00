"""GRAFT trainer: losses against hand computations, a tiny run that learns, checkpoints for zero-shot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from typer.testing import CliRunner

from pipeline.cli import app
from tests.graft.synth import CENTRE, CRS, photo_points
from tests.imagery.synth import write_raster
from training.graft.loss import multi_positive_loss, pixel_loss

TINY = "tiny-graft-test"
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_multi_positive_loss_by_hand() -> None:
    s = [[1.0, 0.0], [0.6, 0.8]]
    g = [[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-1.0, 0.0]]
    owner = [0, 0, 1, 1]  # tile 0 owns photos 0, 1; tile 1 owns photos 2, 3
    tau = 0.07
    expected = 0.0
    for i, si in enumerate(s):
        logits = [sum(a * b for a, b in zip(si, gj, strict=True)) / tau for gj in g]
        log_z = math.log(sum(math.exp(v) for v in logits))
        pos = [j for j, o in enumerate(owner) if o == i]
        expected += sum(-(logits[j] - log_z) for j in pos) / len(pos)
    expected /= len(s)
    got = multi_positive_loss(torch.tensor(s), torch.tensor(g), torch.tensor(owner), tau)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # A tile without photos in the batch contributes nothing.
    got3 = multi_positive_loss(torch.tensor([*s, [0.0, 1.0]]), torch.tensor(g), torch.tensor(owner), tau)
    assert float(got3) == pytest.approx(expected, rel=1e-5)


def test_pixel_loss_by_hand() -> None:
    p = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-0.6, 0.8]]
    g = [[0.8, 0.6], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]]
    owner = [0, 0, 0, 1]  # tile 0 has three photos (one outside the crop), tile 1 one
    valid = [True, True, False, True]
    tau = 0.07
    terms = []
    for j in range(4):
        logits = [sum(a * b for a, b in zip(p[j], gk, strict=True)) / tau for gk in g]
        terms.append(-(logits[j] - math.log(sum(math.exp(v) for v in logits))))
    got = pixel_loss(torch.tensor(p), torch.tensor(g), torch.tensor(owner), torch.tensor(valid), tau)
    assert float(got) == pytest.approx(((terms[0] + terms[1]) / 2 + terms[3]) / 2, rel=1e-5)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registered tiny open_clip config and seeded random weights saved as a local checkpoint."""
    import open_clip

    d = tmp_path_factory.mktemp("graft_clip")
    (d / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(d)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY)
    ckpt = d / "teacher.pt"
    torch.save(model.state_dict(), ckpt)
    return ckpt


@pytest.fixture(scope="module")
def colour_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raster of 40 m colour blocks; each photo is the colour of the block it stands in (+ noise),
    so which photos belong to which tile is learnable from pixels."""
    root = tmp_path_factory.mktemp("graft_train")
    rng = np.random.default_rng(0)
    tr = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    cx, cy = tr.transform(*CENTRE)
    size, block = 1400, 40
    x0, y1 = float(np.floor(cx - size / 2)), float(np.floor(cy + size / 2))
    nb = size // block
    colours = rng.integers(0, 256, (nb, nb, 3), dtype=np.uint8)
    data = np.repeat(np.repeat(colours, block, axis=0), block, axis=1).transpose(2, 0, 1).copy()
    (root / "img").mkdir()
    write_raster(root / "img" / "blocks.tif", data, CRS, from_origin(x0, y1, 1.0, 1.0),
                 colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue],
                 tags={"TIFFTAG_DATETIME": "2021:06:15 10:00:00"})
    lons, lats = photo_points(120, 11, spread_m=600)
    xs, ys = tr.transform(lons, lats)
    rows = []
    (root / "ph").mkdir()
    for i, (lo, la, x, y) in enumerate(zip(lons, lats, xs, ys, strict=True)):
        c = colours[int((y1 - y) // block), int((x - x0) // block)].astype(np.int16)
        px = np.clip(c + rng.integers(-20, 20, (48, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(root / "ph" / f"{i}.jpg")
        rows.append({"id": f"q{i}", "lat": la, "lon": lo, "date": "2021-05-05", "path": f"ph/{i}.jpg"})
    pd.DataFrame(rows).to_csv(root / "photos.csv", index=False)
    out = root / "ds"
    res = CliRunner().invoke(app, ["build-graft", "--photos", str(root / "photos.csv"), "--imagery",
                                   f"local:{root / 'img'}", "--out", str(out), "--tile-px", "32",
                                   "--test-fraction", "0.25", "--split-block-deg", "0.002"])
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.slow
def test_tiny_run_lowers_the_loss_and_checkpoint_serves_zeroshot(tiny_teacher: Path, colour_dataset: Path,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    from training.graft.data import embed_ground_photos, load_tiles, shard_list
    from training.graft.train import GraftTrainConfig, evaluate, train_graft
    from training.graft.zeroshot import is_graft_checkpoint, load_graft_clip

    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    cfg = GraftTrainConfig(model=TINY, pretrained=str(tiny_teacher), level="image", epochs=4, batch_size=8,
                           lr=3e-3, warmup_steps=5, device="cpu", seed=0)
    res = train_graft(colour_dataset, tmp_path / "run", cfg)
    assert res.steps > 20 and len(res.evals) == 4 and res.evals[0]["tiles"] > 0
    # The loss on the training tiles (centre crops, no augmentation) before vs after training.
    model, _pre, tok = load_graft_clip(res.checkpoint, device="cpu")
    import open_clip

    teacher = open_clip.create_model(TINY, pretrained=str(tiny_teacher))
    from training.graft.model import GraftEncoder

    shards = shard_list(colour_dataset)
    emb = embed_ground_photos(shards, teacher, open_clip.create_model_and_transforms(TINY)[2], "t", torch.device("cpu"))
    tiles = load_tiles(shards, "train")
    before = evaluate(GraftEncoder(teacher.visual), tiles, emb, cfg, torch.device("cpu"))
    after = evaluate(model.image_encoder, tiles, emb, cfg, torch.device("cpu"))
    print(f"loss on train tiles before {before} after {after}")
    assert after["loss"] < before["loss"] - 0.2, (before, after)
    assert np.mean(res.losses[-5:]) < np.mean(res.losses[:5])
    # Zero-shot interface: CLIP-like encode_image/encode_text with the teacher's text tower.
    assert is_graft_checkpoint(res.checkpoint)
    text = tok(["a satellite image of a farm", "a satellite image of a city"])
    t_graft = model.encode_text(text, normalize=True)
    t_teacher = torch.nn.functional.normalize(teacher.encode_text(text), dim=-1)
    assert torch.allclose(t_graft, t_teacher, atol=1e-6)
    img = torch.zeros(1, 3, 32, 32)
    assert model.encode_image(img).shape == (1, 16)
    # The zero-shot evaluator of training/evaluate takes the GRAFT bundle as it is.
    from training.evaluate.zeroshot import ZeroShotConfig, evaluate_zeroshot
    from training.graft.zeroshot import load_graft_bundle

    for name, colour in (("farmland", (40, 160, 40)), ("lake", (30, 60, 200))):
        (tmp_path / "zs" / name).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((40, 40, 3), colour, np.uint8)).save(tmp_path / "zs" / name / f"{k}.png")
    zs = evaluate_zeroshot(ZeroShotConfig(checkpoint=res.checkpoint, dataset=str(tmp_path / "zs"), device="cpu",
                                          workers=0), bundle=load_graft_bundle(res.checkpoint, device="cpu"))
    assert zs["images"] == 6 and zs["classes"] == 2 and 0.0 <= zs["top1"] <= 1.0
    assert zs["model"].startswith(f"graft:{TINY}")
    # ... and so does `skyscript eval zeroshot`, which recognises a GRAFT checkpoint by itself.
    cli = CliRunner().invoke(app, ["eval", "zeroshot", "--checkpoint", str(res.checkpoint), "--dataset",
                                   str(tmp_path / "zs"), "--device", "cpu", "--workers", "0",
                                   "--json", str(tmp_path / "zs.json")])
    assert cli.exit_code == 0, cli.output
    assert json.loads((tmp_path / "zs.json").read_text())["model"].startswith(f"graft:{TINY}")
    assert not torch.allclose(model.encode_image(img), torch.nn.functional.normalize(teacher.encode_image(img), dim=-1))


def test_pixel_level_and_cli(tiny_teacher: Path, colour_dataset: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSCRIPT_CACHE", str(tmp_path / "cache"))
    res = CliRunner().invoke(app, ["train", "graft", str(colour_dataset), "--out", str(tmp_path / "px"), "--model",
                                   TINY, "--pretrained", str(tiny_teacher), "--level", "pixel", "--epochs", "1",
                                   "--batch-size", "8", "--max-steps", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "trained 3 steps" in res.output
    assert len(list((tmp_path / "cache" / "graft" / "ground_embeddings").glob("*.npz"))) >= 1  # computed once
    side = json.loads((tmp_path / "px" / "graft_latest.json").read_text())

    assert side["kind"] == "graft" and side["level"] == "pixel" and side["model"] == TINY
    res = CliRunner().invoke(app, ["train", "graft", str(tmp_path), "--out", str(tmp_path / "x"), "--model", TINY,
                                   "--pretrained", str(tiny_teacher), "--level", "patch"])
    assert res.exit_code == 2 and "--level must be image or pixel" in res.output
