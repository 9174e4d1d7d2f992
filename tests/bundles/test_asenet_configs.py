"""The ASE-Net bundle's configs: the paper's defaults and switches, the labeled-count and data set variants, the
checkpointed objects, the discriminators' wiring, the LiTS pipeline on a tiny fixture, and a 2D ISIC run."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from common.engines import ASENetTrainer, d1_inputs, d2_inputs
from common.networks import ASENetDiscriminator, DyBACUNet, DyBACVNet
from tests.bundles.lookup import handler_id, parse_configs
from tests.data.test_layout_lits import build_lits

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "asenet"


parse = functools.partial(parse_configs, BUNDLE)  # parse("train", "quick", root=..., key=value)


def test_paper_defaults() -> None:
    p = parse("train")
    assert p["consistency"] == 1.0 and p["consistency_rampup"] == 40.0 and p["consistency_step"] == 150
    assert p["ema_decay"] == 0.99 and p["noise_std"] == 0.1 and p["noise_clip"] == 0.2 and p["teacher_noise"] is True
    assert p["learning_rate"] == 0.001 and p["adam_betas"] == [0.9, 0.99]
    assert p["d_optimizer"] == "sgd" and p["d_learning_rate"] == 0.01 and p["d_momentum"] == 0.9
    assert p["d_weight_decay"] == 0.0001 and p["adversarial_weight"] == 0.5
    assert p["supervised_ce_weight"] == p["supervised_dice_weight"] == 0.5
    assert p["dybac_temperature"] == 34.0 and p["dybac_temperature_decrement"] == 3.0 and p["dybac_kernels"] == 4
    assert p["labeled_count"] == 12 and p["patch_size"] == [112, 112, 80] and p["dataset_layout"] == "lits"
    assert p.get_parsed_content("phantom").num_cases == 131


def test_discriminator_optimizers_paper_and_code_switch() -> None:
    sgd = parse("train").get_parsed_content("d1_optimizer")
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["lr"] == 0.01 and sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-4
    adam = parse("train", d_optimizer="adam").get_parsed_content("d2_optimizer")
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 0.001 and adam.defaults["betas"] == (0.9, 0.99)


def test_discriminators_and_trainer_wiring() -> None:
    p = parse("train", "quick")
    specs = p.get_parsed_content("discriminators")
    assert [s.name for s in specs] == ["d1", "d2"]
    assert [s.inputs for s in specs] == [d1_inputs, d2_inputs]
    assert all(s.weight == 0.5 and s.weight_key == "consistency_weight" for s in specs)
    assert all(isinstance(s.network, ASENetDiscriminator) for s in specs)
    assert isinstance(p.get_parsed_content("network_def"), DyBACVNet)
    ckpt = {"network", "teacher", "optimizer", "lr_scheduler", "d1", "d2", "d1_optimizer", "d2_optimizer"}
    ckpt.add("best_model_saver")
    assert set(p["checkpoint_dict"]) == ckpt
    assert p[f"{handler_id(p, 'common.handlers.ResumeCheckpointLoader')}#load_dict"] == "@checkpoint_dict"
    assert p[f"{handler_id(p, 'common.handlers.AtomicCheckpointSaver')}#save_dict"] == "@checkpoint_dict"
    # the teacher network has its own id; the EMA handler (wherever it sits in the list) updates that very object
    ema = handler_id(p, "common.handlers.EMATeacher")
    assert p[f"{ema}#teacher"] == "@teacher"
    trainer = p.get_parsed_content("train#trainer")
    assert isinstance(trainer, ASENetTrainer)
    assert trainer.teacher is p.get_parsed_content("teacher") is p.get_parsed_content(ema).ema_model
    assert trainer.teacher is not trainer.network


@pytest.mark.parametrize(
    ("names", "labeled", "folder"),
    [
        (("lits_25",), 25, "lits_25"),
        (("isic2018",), 259, "isic2018"),
        (("isic2018", "isic2018_519"), 519, "isic2018_519"),
        (("la",), 16, "la"),
    ],
)
def test_variants(names: tuple[str, ...], labeled: int, folder: str) -> None:
    p = parse("train", *names)
    assert p["labeled_count"] == labeled
    assert p.get_parsed_content("ckpt_dir").endswith(f"models/{folder}")


def official_3d_supervised(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """train_ASE-Net_3D.py's 0.5 (CE + Dice), written out for the two-channel softmax: the Dice of utils/losses.py
    ``dice_loss`` on the foreground map over the whole batch (squared sums, smooth 1e-5)."""
    ce = torch.nn.functional.cross_entropy(logits, label[:, 0].long())
    p, y = torch.softmax(logits, 1)[:, 1], label[:, 0]
    dice = 1 - (2 * (p * y).sum() + 1e-5) / ((p * p).sum() + (y * y).sum() + 1e-5)
    return 0.5 * (ce + dice)


def official_2d_supervised(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """train_ASE-Net_2d.py's 0.5 (CE + DiceLoss(2)): the batch Dice of both classes, averaged."""
    ce = torch.nn.functional.cross_entropy(logits, label[:, 0].long())
    probs = torch.softmax(logits, 1)
    onehot = torch.cat([label == 0, label == 1], 1).float()
    dice = sum(
        1 - (2 * (probs[:, c] * onehot[:, c]).sum() + 1e-5) / ((probs[:, c] ** 2).sum() + onehot[:, c].sum() + 1e-5)
        for c in range(2)
    )
    return 0.5 * (ce + dice / 2)


def test_supervised_loss_is_the_official_dice_foreground_over_the_batch() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 6, 6, 4)
    label = torch.zeros(2, 1, 6, 6, 4)
    label[0, :, 1:4, 1:4, 1:3] = 1  # the second case has no foreground: a per-sample Dice would differ most
    loss = parse("train").get_parsed_content("loss")
    torch.testing.assert_close(loss(logits, label), official_3d_supervised(logits, label))
    monai_default = parse("train", supervised_dice_include_background=True, supervised_dice_batch=False)
    assert abs(monai_default.get_parsed_content("loss")(logits, label) - loss(logits, label)) > 1e-3
    isic = parse("train", "isic2018").get_parsed_content("loss")
    torch.testing.assert_close(
        isic(logits[..., 0], label[..., 0]), official_2d_supervised(logits[..., 0], label[..., 0])
    )


def lr_per_iteration(*names: str, iterations: int) -> list[float]:
    """The segmenter's learning rate at the start of each iteration under the bundle's schedule handler."""
    from ignite.engine import Engine, Events

    p = parse(*names)
    lr_handler = handler_id(p, "LrScheduleHandler")
    assert p[f"{lr_handler}#epoch_level"] is False  # stepped per iteration, as the official loop
    handler, optimizer = p.get_parsed_content(lr_handler), p.get_parsed_content("optimizer")
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)
    seen: list[float] = []
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(optimizer.param_groups[0]["lr"]))
    engine.run([0], max_epochs=iterations)
    return seen


def test_learning_rate_decays_tenfold_after_iteration_5000_in_3d_and_not_in_2d() -> None:
    """train_ASE-Net_3D.py: lr = 0.01 * 0.1 ** (iter // 2500) at iterations 2500, 5000 with Adam at 1e-3, i.e.
    1e-3 until iteration 5000, 1e-4 after; the 2D script keeps its learning rate (its poly decay is commented out)."""
    lits = lr_per_iteration("train", iterations=5001)
    assert lits[0] == lits[4999] == 1e-3  # iterations 1 to 5000
    assert lits[5000] == pytest.approx(1e-4)  # iteration 5001
    assert set(lr_per_iteration("train", "isic2018", iterations=5001)) == {1e-3}


def test_isic2018_is_2d_with_the_unet() -> None:
    p = parse("train", "isic2018")
    assert p["spatial_dims"] == 2 and p["in_channels"] == 3 and p["dybac_temperature"] == 30.0
    assert p.get_parsed_content("phantom").num_cases == 2594  # 259 / 519 labeled of 2594, as the paper counts
    net = p.get_parsed_content("network_def")
    assert isinstance(net, DyBACUNet)
    d = p.get_parsed_content("d1_def")
    assert d(torch.rand(1, 2, 32, 32), torch.rand(1, 3, 32, 32)).shape == (1, 2)


def test_la_reads_the_benchmark_layout() -> None:
    p = parse("train", "la")
    assert p["dataset_layout"] == "la_heart" and p["spacing"] == [0.625, 0.625, 0.625]
    assert p.get_parsed_content("phantom").num_cases == 100


def test_supervised_baseline_trains_the_same_network_on_labeled_cases_only(tmp_path: Path) -> None:
    p = parse("train", "quick", "supervised", root=tmp_path)
    assert p["train#trainer#_target_"] == "common.engines.SupervisedMethodTrainer"
    assert p["train#dataloader#dataset"] == "@train#dataset"
    assert handler_id(p, "common.handlers.DyBACTemperature")
    with pytest.raises(LookupError):
        handler_id(p, "common.handlers.EMATeacher")
    assert set(p["checkpoint_dict"]) == {"network", "optimizer", "lr_scheduler", "best_model_saver"}  # no teacher


def test_quick_model_loads_into_inference_network() -> None:
    quick = parse("train", "quick").get_parsed_content("network_def")
    inference = parse("inference").get_parsed_content("network_def")
    inference.load_state_dict(quick.state_dict())


def test_lits_fixture_through_the_training_pipeline(tmp_path: Path) -> None:
    lits = build_lits(tmp_path)
    p = parse("train", root=tmp_path)
    case = {
        "image": str(lits / "Training Batch 1" / "volume-0.nii"),
        "label": str(lits / "Training Batch 1" / "segmentation-0.nii"),
    }
    out = Compose(p.get_parsed_content("load_labeled") + p.get_parsed_content("intensity_transforms"))(case)
    image, label = out["image"], out["label"]
    assert image.shape == label.shape == (1, 12, 10, 6)
    # -100 HU -> (-100 + 200) / 450, 110 HU -> 310 / 450
    assert np.allclose(np.unique(image.numpy()), [100 / 450, 310 / 450])
    assert set(np.unique(label.numpy()).tolist()) == {0.0, 1.0}
    assert float(label.sum()) == 6 * 5 * 4  # liver and tumour voxels are all foreground


def test_isic2018_trains_in_2d_on_a_tiny_phantom(tmp_path: Path) -> None:
    p = parse(
        "train", "isic2018", "quick", "quick_isic2018", root=tmp_path,
        phantom={"_target_": "common.data.LesionPhantom2D", "num_cases": 16, "seed": 0},
        phantom_dir=str(tmp_path / "phantom"), labeled_count=4, image_size=[32, 32], features=[4, 8, 8, 8, 8],
        d_features=4, max_iterations=2, epoch_length=2, batch_size=4, labeled_batch_size=2, sw_stride=[32, 32],
        cache_rate=0.0, progress_bar=False,
    )  # fmt: skip
    trainer = p.get_parsed_content("train#trainer")
    trainer.run()
    assert trainer.state.iteration == 2
    assert trainer.state.output[0]["pred"].shape == (4, 2, 32, 32)
    assert trainer.state.dybac_temperature == 30.0  # 2D start; the first step down comes after epoch_length = 2
    assert all(t == 30.0 for t in trainer.teacher.modules() for t in [getattr(t, "temperature", 30.0)])
    assert (tmp_path / "models" / "isic2018" / "model.pt").is_file()


def test_isic_evaluation_adds_accuracy_sensitivity_specificity() -> None:
    p = parse("train", "isic2018", "evaluate", "evaluate_isic2018")
    metrics = p["validate#additional_metrics"]
    for name in ("accuracy", "sensitivity", "specificity"):
        assert metrics[f"test_{name}"]["_target_"] == "ConfusionMatrix"
        assert metrics[f"test_{name}"]["metric_name"] == name
    assert {"test_jaccard", "test_hd95", "test_asd"} <= set(metrics)
