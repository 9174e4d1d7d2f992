"""The DFCPS bundle's configs: the official recipe's defaults, the switches, the labeled fractions and the supervised
baseline (same labeled images, one network, no unlabeled data), the checkpointed objects, the quick and inference
networks (model.pt of the quick run must load into inference.json's network), and a tiny Kvasir-SEG fixture read
through the training pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.engines import SupervisedTrainer

from common.data.io import write_jpeg
from common.engines import DFCPSTrainer
from common.networks import DeepLabV3Plus, ProbabilityEnsemble

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dfcps"


def parse(*names: str, root: Path = BUNDLE, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f"{name}.json") for name in names])
    parser["bundle_root"] = str(root)
    parser["device"] = "$torch.device('cpu')"
    for key, value in overrides.items():
        parser[key] = value
    return parser


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
    assert set(parser["train#handlers#0#load_dict"]) == expected  # ResumeCheckpointLoader
    saver = next(h for h in parser["train#handlers"] if "AtomicCheckpointSaver" in str(h.get("_target_")))
    assert set(saver["save_dict"]) == expected


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
    assert parser["train#trainer#_target_"] == "SupervisedTrainer"
    assert parser["train#dataloader"].replace("::", "#") == "@train#labeled_dataloader"  # no unlabeled stream
    assert set(parser["train#handlers#0#load_dict"]) == {"network", "optimizer_a", "lr_scheduler_a", "best_model_saver"}


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
    assert set(torch.unique(labeled["label"]).tolist()) <= {0.0, 1.0} and labeled["label"].sum() > 0
    unlabeled = parser.get_parsed_content("train#unlabeled_dataset")[0]
    assert set(unlabeled) >= {"image", "image_strong"} and "label" not in unlabeled
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["image"].shape == batch["image_strong"].shape == (4, 3, 32, 32) and batch["label"].shape[0] == 2
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
