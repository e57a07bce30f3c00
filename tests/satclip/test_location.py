"""Spherical harmonics against scipy, orthonormality, SIREN names, load() of project and released-style checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import sph_harm_y

import training.satclip as satclip
from pipeline.errors import BadInputError
from training.satclip.location import LocationConfig, LocationEncoder
from training.satclip.sh import spherical_harmonics


def scipy_real_sh(lonlat: np.ndarray, big_l: int) -> np.ndarray:
    """Real harmonics from scipy's complex ones, SatCLIP's angles, Condon–Shortley phase removed."""
    phi = np.deg2rad(lonlat[:, 0] + 180.0)
    theta = np.deg2rad(lonlat[:, 1] + 90.0)
    cols = []
    for deg in range(big_l):
        for m in range(-deg, deg + 1):
            y = sph_harm_y(deg, abs(m), theta, phi)
            if m == 0:
                cols.append(y.real)
            else:
                cols.append(math.sqrt(2) * (-1) ** m * (y.real if m > 0 else y.imag))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("big_l", [10, 40])
def test_sh_equals_scipy_up_to_the_m0_factor(big_l: int) -> None:
    rng = np.random.default_rng(0)
    ll = np.c_[rng.uniform(-180, 180, 200), rng.uniform(-90, 90, 200)]
    ref = scipy_real_sh(ll, big_l)
    plain = spherical_harmonics(torch.from_numpy(ll), big_l, quirk=False).numpy()
    quirky = spherical_harmonics(torch.from_numpy(ll), big_l, quirk=True).numpy()
    assert plain.shape == (200, big_l**2) and plain.dtype == np.float64
    np.testing.assert_allclose(plain, ref, atol=1e-10)
    m0 = [deg * deg + deg for deg in range(big_l)]  # column of (l, m=0)
    others = np.setdiff1d(np.arange(big_l**2), m0)
    np.testing.assert_allclose(quirky[:, m0], math.pi * ref[:, m0], atol=1e-9)
    np.testing.assert_array_equal(quirky[:, others], plain[:, others])


def test_sh_orthonormal_on_a_fine_grid() -> None:
    big_l = 10
    # Gauss–Legendre in cos(theta) (= -sin lat) × uniform longitude integrates degree < 2n exactly.
    x, w = np.polynomial.legendre.leggauss(32)
    lat = np.degrees(np.arcsin(-x))
    lon = np.linspace(-180, 180, 64, endpoint=False)
    glon, glat = np.meshgrid(lon, lat)
    weights = (w[:, None] * np.full(64, 2 * np.pi / 64)[None, :]).ravel()
    ll = np.c_[glon.ravel(), glat.ravel()]
    y = spherical_harmonics(torch.from_numpy(ll), big_l).numpy()
    gram = (y * weights[:, None]).T @ y
    np.testing.assert_allclose(gram, np.eye(big_l**2), atol=1e-10)
    yq = spherical_harmonics(torch.from_numpy(ll), big_l, quirk=True).numpy()
    gram_q = (yq * weights[:, None]).T @ yq
    assert gram_q[0, 0] == pytest.approx(math.pi**2)  # the quirk is not orthonormal


def test_siren_state_dict_names() -> None:
    enc = LocationEncoder(LocationConfig(legendre_polys=10, embed_dim=256, capacity=512, num_hidden_layers=2))
    assert sorted(enc.state_dict()) == [
        "nnet.last_layer.bias", "nnet.last_layer.weight", "nnet.layers.0.bias", "nnet.layers.0.weight",
        "nnet.layers.1.bias", "nnet.layers.1.weight"]  # fmt: skip
    assert enc.state_dict()["nnet.layers.0.weight"].shape == (512, 100)
    assert enc.state_dict()["nnet.layers.0.weight"].dtype == torch.float64


def _released_style_checkpoint(path: Path, legendre: int = 10, capacity: int = 64, embed: int = 32) -> dict:
    """A checkpoint laid out as SatCLIP's released ones: Lightning dict, model.-prefixed keys, duplicates."""
    g = torch.Generator().manual_seed(1)
    w0 = torch.rand(capacity, legendre**2, generator=g, dtype=torch.float64) * 0.02 - 0.01
    b0 = torch.rand(capacity, generator=g, dtype=torch.float64) * 0.02 - 0.01
    w1 = torch.rand(capacity, capacity, generator=g, dtype=torch.float64) * 0.2 - 0.1
    b1 = torch.rand(capacity, generator=g, dtype=torch.float64) * 0.2 - 0.1
    w2 = torch.rand(embed, capacity, generator=g, dtype=torch.float64) * 0.2 - 0.1
    b2 = torch.rand(embed, generator=g, dtype=torch.float64) * 0.2 - 0.1
    nnet = {"layers.0.weight": w0, "layers.0.bias": b0, "layers.1.weight": w1, "layers.1.bias": b1,
            "last_layer.weight": w2, "last_layer.bias": b2}  # fmt: skip
    state = {"model.logit_scale": torch.tensor(2.6), "model.visual.fc.weight": torch.zeros(embed, 512)}
    for prefix in ("model.nnet.", "model.location.nnet."):
        state.update({prefix + k: v for k, v in nnet.items()})
    hp = {"embed_dim": embed, "le_type": "sphericalharmonics", "pe_type": "siren", "legendre_polys": legendre,
          "harmonics_calculation": "analytic", "capacity": capacity, "num_hidden_layers": 2,
          "eval_downstream": True, "air_temp_data_path": "x", "election_data_path": "y"}  # fmt: skip
    torch.save({"state_dict": state, "hyper_parameters": hp, "epoch": 3}, path)
    return nnet


def test_load_released_checkpoint_gives_its_embeddings(tmp_path: Path) -> None:
    path = tmp_path / "satclip-resnet18-l10.ckpt"
    w = _released_style_checkpoint(path)
    enc = satclip.load(path)
    ll = np.array([[-122.3, 47.6], [13.4, 52.5], [151.2, -33.9], [0.0, 90.0]])
    got = enc(torch.from_numpy(ll)).detach().numpy()
    # independent forward: scipy harmonics with the π factor on m = 0, then SIREN by hand
    feats = scipy_real_sh(ll, 10)
    feats[:, [d * d + d for d in range(10)]] *= math.pi
    h = np.sin(30.0 * (feats @ w["layers.0.weight"].numpy().T + w["layers.0.bias"].numpy()))
    h = np.sin(1.0 * (h @ w["layers.1.weight"].numpy().T + w["layers.1.bias"].numpy()))
    ref = h @ w["last_layer.weight"].numpy().T + w["last_layer.bias"].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert enc.cfg.sh_quirk and got.dtype == np.float64


def test_load_rejects_bad_shapes_and_inputs(tmp_path: Path) -> None:
    path = tmp_path / "bad.ckpt"
    _released_style_checkpoint(path, legendre=10)
    ckpt = torch.load(path, weights_only=False)
    ckpt["hyper_parameters"]["legendre_polys"] = 40  # weights are for L = 10
    torch.save(ckpt, path)
    with pytest.raises(BadInputError, match=r"nnet.layers.0.weight has shape \(64, 100\).*\(64, 1600\)"):
        satclip.load(path)
    good = tmp_path / "good.ckpt"
    _released_style_checkpoint(good)
    enc = satclip.load(good)
    with pytest.raises(BadInputError, match="latitude beyond"):
        enc(torch.tensor([[10.0, 95.0]]))
    with pytest.raises(BadInputError, match=r"\(N, 2\)"):
        enc(torch.tensor([10.0, 5.0]))
    # longitudes wrap: 370° is 10°
    a, b = enc(torch.tensor([[370.0, 5.0], [10.0, 5.0]])).detach()
    torch.testing.assert_close(a, b)
    with pytest.raises(FileNotFoundError):
        satclip.load(tmp_path / "missing.ckpt")
