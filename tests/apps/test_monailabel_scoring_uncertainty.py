"""The app's uncertainty scoring logic (``apps/monailabel/lib/scoring_uncertainty.py``), without MONAI Label.

Hand-computed entropies: ``H(1/2, 1/2) = ln 2 = 0.693147``; ``H(1/4, 3/4) = 1/4 ln 4 + 3/4 ln 4/3 = 0.562335``.
A tiny bundle (a 1x1 convolution with set weights, a ``scripts`` package of its own as exports have) checks that
:class:`BundleUncertainty` runs the bundle's own pipeline, reads its own uncertainty map where it has
``save_uncertainty`` and the softmax entropy where it has not, and survives another task unloading ``scripts``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Activationsd, AsDiscreted, CopyItemsd, KeepLargestConnectedComponentd, SaveImaged

APP = Path(__file__).resolve().parents[2] / "apps" / "monailabel"
sys.path.insert(0, str(APP))
from lib.scoring_uncertainty import (  # noqa: E402
    SOURCE_BUNDLE,
    SOURCE_SOFTMAX,
    BundleUncertainty,
    as_probabilities,
    entropy_map,
    map_score,
    prediction_transforms,
)

LN2 = math.log(2)
H_QUARTER = 0.25 * math.log(4) + 0.75 * math.log(4 / 3)  # 0.562335


def test_entropy_map_in_nats_per_voxel():
    p = torch.tensor([[0.5, 1.0, 0.25], [0.5, 0.0, 0.75]])  # (C=2, 3 voxels)
    h = entropy_map(p)
    assert h.shape == (1, 3)
    # nats, not bits (ln 2, not 1); 0 ln 0 = 0 exactly (no eps inside the log)
    assert torch.allclose(h, torch.tensor([[LN2, 0.0, H_QUARTER]]), atol=1e-6)
    assert h[0, 1].item() == 0.0


def test_entropy_map_of_a_sigmoid_output_is_the_two_class_entropy():
    assert torch.allclose(entropy_map(torch.tensor([[0.5, 0.25]])), torch.tensor([[LN2, H_QUARTER]]), atol=1e-6)


def test_as_probabilities_applies_softmax_to_logits_only():
    logits = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])
    assert torch.allclose(as_probabilities(logits), torch.tensor([[0.25, 0.5], [0.75, 0.5]]), atol=1e-6)
    probabilities = torch.tensor([[0.25, 0.5], [0.75, 0.5]])
    assert torch.equal(as_probabilities(probabilities), probabilities)  # not softmaxed twice (0.3775 / 0.6225)
    # within [0, 1] but not summing to 1: logits after all
    assert torch.allclose(as_probabilities(torch.tensor([[0.2], [0.3]])).sum(0), torch.ones(1))
    assert torch.allclose(as_probabilities(torch.tensor([[0.0, 0.25]])), torch.tensor([[0.0, 0.25]]))
    assert torch.allclose(as_probabilities(torch.tensor([[0.0, 3.0]])), torch.sigmoid(torch.tensor([[0.0, 3.0]])))


def test_map_score_is_the_mean_over_voxels():
    assert map_score(torch.tensor([[[0.0, LN2], [LN2, 0.0]]])) == pytest.approx(LN2 / 2)
    assert map_score(np.array([-1e-9, 0.5])) == pytest.approx(0.25)  # interpolation noise counts as 0
    for bad in (np.array([0.1, np.nan]), np.array([0.1, -0.1]), np.array([np.inf]), np.zeros(0)):
        with pytest.raises(ValueError):
            map_score(bad)


def test_prediction_transforms_stop_at_the_argmax_and_drop_writers(tmp_path):
    softmax = Activationsd(keys="pred", softmax=True)
    copy = CopyItemsd(keys="pred", names="uncertainty")
    early_writer = SaveImaged(keys="uncertainty", output_dir=str(tmp_path))
    argmax = AsDiscreted(keys="pred", argmax=True)
    after = KeepLargestConnectedComponentd(keys="pred")
    late_writer = SaveImaged(keys="pred", output_dir=str(tmp_path))
    kept = prediction_transforms([softmax, copy, early_writer, argmax, after, late_writer])
    assert kept == [softmax, copy]


# ------------------------------------------------------------------------------------------- a tiny bundle
NET_CODE = '''
import torch


class TinyNet(torch.nn.Module):
    """1x1 convolution to two classes: logits (0, x) for an input value x."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)

    def forward(self, x):
        return self.conv(x)
'''


def _bundle(root: Path, own_uncertainty: bool) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "scripts").mkdir()
    (root / "scripts" / "__init__.py").write_text("")
    (root / "scripts" / "tiny.py").write_text(NET_CODE)
    post = [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/out'"},
    ]
    config = {
        "imports": ["$import scripts"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "scripts.tiny.TinyNet"},
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "reader": "NumpyReader"},
                {"_target_": "EnsureChannelFirstd", "keys": "image", "channel_dim": "no_channel"},
            ],
        },
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": post},
    }
    if own_uncertainty:  # a constant 0.1 map, distinguishable from the softmax entropy (0.627741)
        config["save_uncertainty"] = False
        config["uncertainty_value"] = 0.1
        post.insert(
            0,
            {
                "_target_": "Lambdad",
                "keys": "pred",
                "overwrite": "uncertainty",
                "func": "$lambda p: torch.full_like(p[:1], @uncertainty_value)",
                "_disabled_": "$not @save_uncertainty",
            },
        )
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    sys.path.insert(0, str(root))
    try:
        from scripts.tiny import TinyNet
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]
    net = TinyNet()
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.zero_()
        net.conv.weight[1, 0, 0, 0] = 1.0  # logits (0, x)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "study.npy"
    np.save(path, np.array([[0.0, math.log(3)], [0.0, math.log(3)]], dtype=np.float32))
    return path


def test_a_bundle_without_its_own_uncertainty_is_scored_by_its_softmax_entropy(tmp_path, image):
    scorer = BundleUncertainty(_bundle(tmp_path / "bundle", own_uncertainty=False))
    assert scorer.source == SOURCE_SOFTMAX
    uncertainty = scorer.uncertainty_map(image)
    # logits (0, 0) -> ln 2; (0, ln 3) -> p = (1/4, 3/4) -> 0.562335
    assert torch.allclose(uncertainty, torch.tensor([[[LN2, H_QUARTER], [LN2, H_QUARTER]]]), atol=1e-5)
    assert scorer(image) == pytest.approx((LN2 + H_QUARTER) / 2, abs=1e-5)  # 0.627741
    assert not (tmp_path / "bundle" / "out").exists()  # the bundle's writer was dropped


def test_a_bundle_with_save_uncertainty_is_scored_by_its_own_map(tmp_path, image):
    scorer = BundleUncertainty(_bundle(tmp_path / "bundle", own_uncertainty=True))
    assert scorer.source == SOURCE_BUNDLE
    assert scorer(image) == pytest.approx(0.1)  # its own map (save_uncertainty turned on), not the softmax entropy
    override = BundleUncertainty(tmp_path / "bundle", overrides={"uncertainty_value": 0.3, "no_such_key": 1})
    assert override(image) == pytest.approx(0.3)


def test_scoring_survives_another_task_unloading_the_bundle_scripts(tmp_path, image):
    bundle = _bundle(tmp_path / "bundle", own_uncertainty=False)
    scorer = BundleUncertainty(bundle)
    assert str(bundle) not in sys.path  # the bundle folder is not left on the path
    for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[name]  # what MONAI Label's bundle tasks do after each call, from another thread
    assert scorer(image) == pytest.approx((LN2 + H_QUARTER) / 2, abs=1e-5)


def test_missing_weights_are_refused(tmp_path):
    bundle = _bundle(tmp_path / "bundle", own_uncertainty=False)
    (bundle / "models" / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="model.pt"):
        BundleUncertainty(bundle)


# ------------------------------------------------------------------------------------- against the bundle itself
@pytest.mark.integration
def test_score_equals_the_bundles_own_inference_with_save_uncertainty(tmp_path):
    """DFCPS (deterministic: an ensemble's entropy): the app's score of a study is the mean of the map that
    ``python -m monai.bundle run ... --save_uncertainty True`` writes, as ``rank_by_uncertainty`` ranks it."""
    import subprocess

    from monai.bundle import ConfigParser
    from PIL import Image

    from common.bundle.uncertainty import rank_by_uncertainty
    from common.data import LesionPhantom2D

    root = Path(__file__).resolve().parents[2]
    configs = [str(root / "bundles" / "dfcps" / "configs" / f"{n}.json") for n in ("inference", "quick", "benchmark")]
    bundle = tmp_path / "dfcps"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(dict(ConfigParser.load_config_files(configs))))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    with torch.no_grad():  # untrained; larger logits spread the entropies over (0, ln 2) instead of about ln 2
        for member in network.networks:
            member.classifier.weight.mul_(50.0)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    images = tmp_path / "images"
    images.mkdir()
    phantom = LesionPhantom2D(num_cases=3, seed=0)
    for i in range(3):
        Image.fromarray(phantom.generate(i)[0]).save(images / f"case_{i}.png")
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
         "--bundle_root", str(bundle), "--dataset_dir", str(images), "--output_dir", str(out),
         "--save_uncertainty", "True"],
        check=True, cwd=root, capture_output=True, timeout=900,
    )  # fmt: skip
    reference = {c.case: c.mean_entropy for c in rank_by_uncertainty(out)}
    assert sorted(reference) == ["case_0", "case_1", "case_2"]
    # not the flat ln 2 = 0.693 of an untrained network, which any map would match (measured: 0.627 to 0.638)
    assert max(reference.values()) < 0.67 and max(reference.values()) - min(reference.values()) > 1e-3
    scorer = BundleUncertainty(bundle)
    assert scorer.source == SOURCE_BUNDLE
    for case, expected in reference.items():
        assert scorer(images / f"{case}.png") == pytest.approx(expected, rel=1e-5, abs=1e-6)
