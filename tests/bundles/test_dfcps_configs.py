"""The DFCPS bundle's configs: the official recipe's defaults, the switches, the labeled fractions and the supervised
baseline (same labeled images, one network, no unlabeled data), the checkpointed objects, the quick and inference
networks (model.pt of the quick run must load into inference.json's network), and a tiny Kvasir-SEG fixture read
through the training pipeline."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.transforms import Compose, Zoom
from torch import nn

from common.data.io import write_jpeg
from common.engines import DFCPSTrainer
from common.networks import DeepLabV3Plus, ProbabilityEnsemble
from tests.bundles.lookup import handler_id, parse_configs

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dfcps"


parse = functools.partial(parse_configs, BUNDLE)  # parse("train", "quick", root=..., key=value)


def test_official_recipe_defaults() -> None:
    parser = parse("train")
    assert parser.get_parsed_content("cps_weight") == 1.5 and parser.get_parsed_content("fixmatch_weight") == 1.0
    assert parser["confidence_threshold"] == 0.9 and parser["consistency_on_labeled"] is True
    assert parser["labeled_fraction"] == 0.5 and parser["seed"] == 12345 and parser["epochs"] == 34
    assert parser["image_size"] == [512, 512] and parser["batch_size"] == 16 and parser["labeled_batch_size"] == 8
    assert parser["learning_rate"] == 0.02 and parser["poly_power"] == 0.9 and parser["momentum"] == 0.9
    assert parser["output_stride"] == 16 and parser["aspp_rates"] == [6, 12, 18] and parser["multi_grid"] == [1, 2, 4]
    assert parser["encoder_layers"] == [3, 4, 6, 3] and parser["widen_factor"] == 1.0
    assert parser["pretrained_encoder_path"] is None
    # issue 12: the official code's encoder (ResNet-50-C), reduction, weak view and weight decay
    assert parser["encoder_stem"] == "deep" and parser["stem_width"] == 64
    assert parser["unsupervised_reduction"] == "mean" and parser["ignore_index"] == 255
    assert parser["train_scales"] == [0.5, 0.75, 1.0, 1.5, 1.75, 2.0] and parser["flip_prob"] == 0.5
    assert parser["rotate_prob"] == 0.0 and parser["weight_decay_on_norm_and_bias"] is False


def test_omega_switch_sets_both_unsupervised_weights() -> None:
    parser = parse("train", omega=0.4)
    assert parser.get_parsed_content("cps_weight") == parser.get_parsed_content("fixmatch_weight") == 0.4


@pytest.mark.parametrize("name, fraction", [("labeled_1_4", 0.25), ("labeled_1_8", 0.125)])
def test_labeled_fraction_configs(name: str, fraction: float) -> None:
    parser = parse("train", name)
    assert parser["labeled_fraction"] == fraction
    assert parser.get_parsed_content("ckpt_dir").endswith(f"models/{name}")
    assert parser.get_parsed_content("output_dir").endswith(f"eval/{name}")
    supervised = parse("train", name, "supervised")
    assert supervised.get_parsed_content("ckpt_dir").endswith(f"models/supervised_1_{round(1 / fraction)}")


def test_checkpoints_hold_both_networks_optimizers_and_schedulers() -> None:
    parser = parse("train", "quick")
    expected = {"network", "optimizer_a", "optimizer_b", "lr_scheduler_a", "lr_scheduler_b", "best_model_saver"}
    assert set(parser["checkpoint_dict"]) == expected
    assert parser[f"{handler_id(parser, 'common.handlers.ResumeCheckpointLoader')}#load_dict"] == "@checkpoint_dict"
    assert parser[f"{handler_id(parser, 'common.handlers.AtomicCheckpointSaver')}#save_dict"] == "@checkpoint_dict"


def test_the_two_networks_and_their_ensemble() -> None:
    parser = parse("train", "quick")
    network = parser.get_parsed_content("network")
    assert isinstance(network, ProbabilityEnsemble) and len(network.networks) == 2
    net_a, net_b = parser.get_parsed_content("network_a"), parser.get_parsed_content("network_b")
    assert net_a is network.networks[0] and net_b is network.networks[1] and net_a is not net_b
    assert isinstance(net_a, DeepLabV3Plus)
    assert not torch.equal(net_a.classifier.weight, net_b.classifier.weight)  # two initialisations
    optimizer_b = parser.get_parsed_content("optimizer_b")
    assert {id(p) for g in optimizer_b.param_groups for p in g["params"]} == {id(p) for p in net_b.parameters()}


def test_quick_and_inference_use_the_recipes_network() -> None:
    """The conformance suite loads the quick run's model.pt into inference.json's network_def."""
    shapes = {}
    for names in (("train",), ("train", "quick"), ("inference",)):
        state = parse(*names).get_parsed_content("network_def").state_dict()
        shapes[names] = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes[("train",)] == shapes[("train", "quick")] == shapes[("inference",)]
    assert parse("train", "quick").get_parsed_content("phantom_dir") == parse("train").get_parsed_content("phantom_dir")


def test_supervised_baseline_is_one_network_on_the_labeled_images() -> None:
    parser = parse("train", "quick", "supervised")
    network = parser.get_parsed_content("network_def")
    assert isinstance(network, ProbabilityEnsemble) and len(network.networks) == 1
    assert parser.get_parsed_content("strong_views") is False
    assert parser["train#trainer#_target_"] == "common.engines.SupervisedMethodTrainer"
    assert parser["train#dataloader"].replace("::", "#") == "@train#labeled_dataloader"  # no unlabeled stream
    loader = parser.get_parsed_content(handler_id(parser, "common.handlers.ResumeCheckpointLoader"))
    assert set(loader.load_dict) == {"network", "optimizer_a", "lr_scheduler_a", "best_model_saver"}


def kvasir_fixture(root: Path, count: int = 16) -> Path:
    """A tiny Kvasir-SEG folder: ``Kvasir-SEG/images/<id>.jpg`` and JPEG masks whose values need a threshold."""
    folder = root / "Kvasir-SEG"
    rng = np.random.default_rng(0)
    for index in range(count):
        height, width = 40 + index % 3, 48
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[10:25, 12 + index % 5 : 30] = 255
        write_jpeg(folder / "images" / f"cju{index:04d}.jpg", image)
        write_jpeg(folder / "masks" / f"cju{index:04d}.jpg", mask, quality=100)
    return root


def test_kvasir_layout_through_the_training_pipeline(tmp_path: Path) -> None:
    data = kvasir_fixture(tmp_path / "user")
    bundle = tmp_path / "bundle"
    parser = parse(
        "train", "quick", "labeled_1_4", root=bundle, dataset_dir=str(data), image_size=[32, 32], cache_rate=0.0
    )
    datalist = parser.get_parsed_content("datalist")
    counts = {key: len(datalist[key]) for key in ("training", "unlabeled", "validation", "test")}
    assert counts == {"training": 3, "unlabeled": 8, "validation": 2, "test": 3}  # 16 -> 3 test, 2 val, 11 -> 1/4
    assert all("label" not in case for case in datalist["unlabeled"])
    assert (bundle / "eval" / "labeled_1_4" / "datalist.json").is_file()
    labeled = parser.get_parsed_content("train#dataset")[0]
    assert labeled["image"].shape == labeled["image_strong"].shape == (3, 32, 32)
    assert set(torch.unique(labeled["label"]).tolist()) <= {0.0, 1.0, 255.0}  # 255: padding after a zoom out
    assert ((labeled["label"] == 1) & (labeled["valid"][:1] == 1)).sum() > 0
    unlabeled = parser.get_parsed_content("train#unlabeled_dataset")[0]
    assert set(unlabeled) >= {"image", "image_strong", "valid"} and "label" not in unlabeled
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["image"].shape == batch["image_strong"].shape == batch["valid"].shape == (4, 3, 32, 32)
    assert batch["label"].shape[0] == 2
    assert isinstance(parser.get_parsed_content("train#trainer"), DFCPSTrainer)
    # the supervised baseline of the same fraction trains on exactly these labeled images
    supervised = parse(
        "train", "quick", "labeled_1_4", "supervised", root=bundle, dataset_dir=str(data), image_size=[32, 32]
    )
    assert supervised.get_parsed_content("datalist")["training"] == datalist["training"]
    assert isinstance(supervised.get_parsed_content("train#trainer"), SupervisedTrainer)


def test_multi_gpu_config_keeps_plain_batch_norm_on_cpu() -> None:
    parser = parse("train", "multi_gpu_train", "quick")
    assert parser.get_parsed_content("sync_batchnorm") is torch.cuda.is_available()
    assert parser["train#unlabeled_dataloader#sampler"].replace("::", "#") == "@train#unlabeled_sampler"
    assert parser["train#labeled_dataloader#sampler"].replace("::", "#") == "@train#sampler"


# ------------------------------------------------------------------------------------- issue 12: view and optimizer
def weak_view(seed: int = 0, **overrides) -> Compose:
    """The training stream's random transforms (flip, scale, crop, strong view, normalisation, padding) at 32x32."""
    parser = parse("train", "quick", image_size=[32, 32], **overrides)
    view = Compose(parser.get_parsed_content("train#random_transforms"))
    view.set_random_state(seed=seed)
    return view


def case(size: int = 32) -> dict:
    """A 3-channel ramp image (every pixel different) and a label: foreground where column < row."""
    ramp = torch.arange(size * size, dtype=torch.float32).view(1, size, size) / (size * size) * 255.0
    image = torch.cat([ramp, ramp.flip(1), 255.0 - ramp])
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return {"image": MetaTensor(image), "label": MetaTensor((cols < rows).float()[None])}


def unnormalise(image: torch.Tensor) -> torch.Tensor:
    parser = parse("train")
    mean = torch.tensor(parser["intensity_mean"]).view(3, 1, 1)
    std = torch.tensor(parser["intensity_std"]).view(3, 1, 1)
    return image * std + mean


def test_zoom_out_pads_the_border_as_ignored() -> None:
    """Scale 0.5 then crop/pad to 32x32: the 16x16 image sits in the middle (symmetric padding, as TorchSemiSeg's
    pad_image_to_shape); the padding is label 255, valid 0 and image 0 after normalisation (TorchSemiSeg pads the
    normalised image with 0); the strong view is padded alike."""
    out = weak_view(train_scales=[0.5], flip_prob=0.0)(case())
    assert out["image"].shape == out["image_strong"].shape == (3, 32, 32) and out["label"].shape == (1, 32, 32)
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:24, 8:24] = True
    assert torch.all(out["label"][0][~inside] == 255) and set(torch.unique(out["label"][0][inside]).tolist()) == {0, 1}
    assert torch.equal(out["valid"], inside.float().expand(3, 32, 32))
    assert torch.all(out["image"][:, ~inside] == 0) and torch.all(out["image_strong"][:, ~inside] == 0)
    expected = Zoom(0.5, mode="bilinear", keep_size=False)(case()["image"])  # the whole image, half size
    torch.testing.assert_close(unnormalise(out["image"])[:, 8:24, 8:24], expected.as_tensor(), atol=1e-3, rtol=1e-4)


def test_zoom_in_is_a_random_crop_of_the_scaled_image() -> None:
    """Scale 2 then a 32x32 crop: every pixel valid, image and label one window of the scaled image, at positions
    that vary with the random state (the old view zoomed about the centre)."""
    scaled_image = Zoom(2.0, mode="bilinear", keep_size=False)(case()["image"]).as_tensor()
    scaled_label = Zoom(2.0, mode="nearest", keep_size=False)(case()["label"]).as_tensor()
    offsets = set()
    for seed in range(6):
        out = weak_view(seed, train_scales=[2.0], flip_prob=0.0)(case())
        assert torch.all(out["valid"] == 1) and set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
        image = unnormalise(out["image"])
        matches = [
            (r, c)
            for r in range(33)
            for c in range(33)
            if torch.allclose(image, scaled_image[:, r : r + 32, c : c + 32], atol=1e-3)
        ]
        assert len(matches) == 1
        r, c = matches[0]
        assert torch.equal(out["label"], scaled_label[:, r : r + 32, c : c + 32])
        offsets.add((r, c))
    assert len(offsets) > 1


def test_flip_is_horizontal_and_scales_are_drawn_from_the_list() -> None:
    """flip_prob 1 and scale 1: the image flipped along its first spatial axis (PIL's width: cv2.flip(img, 1)); the
    scale is one of ``train_scales`` (0.5 or 0.75 give 16 or 24 valid columns in a 32-wide view)."""
    out = weak_view(train_scales=[1.0], flip_prob=1.0)(case())
    torch.testing.assert_close(unnormalise(out["image"]), case()["image"].as_tensor().flip(1), atol=1e-3, rtol=1e-4)
    assert torch.equal(out["label"], case()["label"].as_tensor().flip(1))
    widths = {int(weak_view(seed, train_scales=[0.5, 0.75])(case())["valid"][0].sum(0).max()) for seed in range(12)}
    assert widths == {16, 24}


def test_optional_rotation_marks_its_corners_invalid() -> None:
    """``rotate_prob`` > 0 (off by default, as the official code): the corners it brings in have ``valid`` 0, which the
    DFCPS trainer turns into ignored labels and pseudo-labels."""
    assert torch.all(weak_view(train_scales=[1.0])(case())["valid"] == 1)
    out = weak_view(rotate_prob=1.0, rotate_range=0.5, train_scales=[1.0])(case())
    assert torch.all(out["valid"][:, 0, 0] == 0) and torch.all(out["valid"][:, 16, 16] == 1)


def test_strong_view_keeps_the_weak_views_geometry() -> None:
    """Without photometric corruption the strong view equals the weak view after the random flip, scale, crop and
    padding: both share one geometry (FixMatch's aligned views)."""
    photometric_off = {"jitter_prob": 0.0, "blur_prob": 0.0, "noise_prob": 0.0, "cutout_prob": 0.0}
    for seed in range(4):
        out = weak_view(seed, **photometric_off)(case())
        torch.testing.assert_close(out["image_strong"], out["image"], atol=1e-5, rtol=0)  # float round-off only
    out = weak_view(1, jitter_prob=0.0, blur_prob=0.0, noise_prob=0.0, cutout_prob=1.0, train_scales=[0.5])(case())
    changed = (out["image"] != out["image_strong"]).any(0)
    assert changed.any() and not changed[out["valid"][0] == 0].any()  # the cutout stays inside the image


TINY = {"encoder_layers": [1, 1, 1, 1], "widen_factor": 0.125, "aspp_channels": 8, "decoder_channels": 8}


def test_losses_ignore_the_padding_label(tmp_path: Path) -> None:
    parser = parse("train", "quick", root=tmp_path, **TINY)  # the trainer's data: a phantom under tmp_path
    loss = parser.get_parsed_content("loss")
    assert loss.ignore_index == 255
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.pseudo_label_loss.reduction == "mean" and trainer.pseudo_label_loss.ignore_index == 255
    confident = parse("train", "quick", root=tmp_path, unsupervised_reduction="confident", **TINY)
    assert confident.get_parsed_content("train#trainer").pseudo_label_loss.reduction == "confident"
    supervised = parse("train", "quick", "supervised", root=tmp_path, **TINY)  # the same padded views
    assert supervised.get_parsed_content("train#trainer").loss_function.ignore_index == 255


def test_optimizers_spare_batch_norm_and_biases_from_weight_decay() -> None:
    parser = parse("train", "quick", **TINY)
    network = parser.get_parsed_content("network_a")
    for name in ("optimizer_a", "optimizer_b"):
        optimizer = parser.get_parsed_content(name)
        decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
        source = network if name == "optimizer_a" else parser.get_parsed_content("network_b")
        for module in source.modules():
            for key, p in module.named_parameters(recurse=False):
                spared = isinstance(module, nn.BatchNorm2d) or key == "bias"
                assert decay[id(p)] == (0.0 if spared else 1e-4), (name, key)
    every = parse("train", "quick", weight_decay_on_norm_and_bias=True, **TINY).get_parsed_content("optimizer_a")
    assert {g["weight_decay"] for g in every.param_groups} == {1e-4}


def test_encoder_stem_switch() -> None:
    deep = parse("train", "quick", **TINY).get_parsed_content("network_a")
    assert isinstance(deep.encoder.conv1, nn.Sequential) and deep.encoder.conv1[0].kernel_size == (3, 3)
    seven = parse("train", "quick", encoder_stem="torchvision", **TINY).get_parsed_content("network_a")
    assert isinstance(seven.encoder.conv1, nn.Conv2d) and seven.encoder.conv1.kernel_size == (7, 7)
