"""Tests of common.engines.dfcps on tiny cases with exact values: CPS pairs the right networks, FixMatch trains the
strong prediction on the weak view's pseudo-label, masked pixels get no gradient (tau = 0.9 vs 0), the unsupervised
terms' normaliser (every pixel vs the confident ones), padded pixels count in no loss, sigmoid and softmax heads, and
both networks, optimizers and LR schedulers are restored on resume."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.handlers import LrScheduleHandler
from torch import nn

from common.data import LABELED_BATCH_SIZE_KEY, LabeledUnlabeledLoader
from common.engines import DFCPSTrainer
from common.handlers import AtomicCheckpointSaver, ResumeCheckpointLoader
from common.networks import ProbabilityEnsemble


def pixel_classifier(weights: list[list[float]], bias: list[float] | None = None) -> nn.Conv2d:
    """A 1x1 convolution with fixed weights: logits are a known function of each pixel."""
    conv = nn.Conv2d(len(weights[0]), len(weights), kernel_size=1, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights).view(len(weights), len(weights[0]), 1, 1))
        if bias is not None:
            conv.bias.copy_(torch.tensor(bias))
    return conv


class LogitMap(nn.Module):
    """A "network" whose logits are a learnable map, the same for every image (a pixel's gradient is its own)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1)


def no_supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0


def batch(images: torch.Tensor, strong: torch.Tensor, num_labeled: int, num_classes: int = 2) -> dict:
    labels = torch.randint(0, num_classes, (num_labeled, 1, *images.shape[2:])).float()
    return {"image": images, "image_strong": strong, "label": labels, LABELED_BATCH_SIZE_KEY: num_labeled}


def run_one_step(network_a: nn.Module, network_b: nn.Module, data: dict, lr: float = 0.0, **kwargs) -> DFCPSTrainer:
    """One iteration; with lr = 0 the parameters stay as they were and keep the step's gradients."""
    trainer = DFCPSTrainer(
        device="cpu",
        max_epochs=1,
        epoch_length=1,
        train_data_loader=[data],
        network=network_a,
        optimizer=torch.optim.SGD(network_a.parameters(), lr=lr),
        network_b=network_b,
        optimizer_b=torch.optim.SGD(network_b.parameters(), lr=lr),
        **kwargs,
    )
    trainer.run()
    return trainer


def test_cps_pairs_the_networks_and_fixmatch_uses_the_weak_pseudo_label() -> None:
    torch.manual_seed(0)
    net_a = pixel_classifier([[0.0], [1.0]])  # logits (0, x): foreground where x > 0
    net_b = pixel_classifier([[0.0], [-2.0]], bias=[0.0, 0.5])  # foreground where x < 0.25
    images = torch.randn(4, 1, 6, 6)
    strong = -images  # a strong view whose own argmax contradicts the weak view's everywhere
    data = batch(images, strong, num_labeled=2)
    trainer = run_one_step(net_a, net_b, data, threshold=0.0)
    out = trainer.state.output[0]
    with torch.no_grad():
        weak_a, weak_b = net_a(images), net_b(images)
        y_a, y_b = weak_a.argmax(1), weak_b.argmax(1)
        assert not torch.equal(y_a, y_b)  # the two networks disagree somewhere, so the pairing is observable
        expected = {
            "sup_a": F.cross_entropy(weak_a[:2], data["label"][:, 0].long()),
            "cps_a": F.cross_entropy(weak_a, y_b),  # B's pseudo-label supervises A's weak prediction
            "cps_b": F.cross_entropy(weak_b, y_a),  # and A's supervises B's
            "fixmatch_a": F.cross_entropy(net_a(strong), y_a),  # A's own weak pseudo-label -> A's strong prediction
            "fixmatch_b": F.cross_entropy(net_b(strong), y_b),
        }
        for name, value in expected.items():
            torch.testing.assert_close(out[f"loss_{name}"], value, msg=name)
        # the alternatives the test must tell apart: self-supervision, and the strong view's own argmax
        assert not torch.isclose(out["loss_cps_a"], F.cross_entropy(weak_a, y_a))
        assert not torch.isclose(out["loss_fixmatch_a"], F.cross_entropy(net_a(strong), net_a(strong).argmax(1)))
        total = out["loss_sup"] + 1.5 * out["loss_cps"] + 1.0 * out["loss_fixmatch"]
        torch.testing.assert_close(out["loss"], total)
        torch.testing.assert_close(out["pred"], weak_a)


def test_gradient_of_network_a_comes_from_network_bs_pseudo_label() -> None:
    """CPS only: A's weights get exactly the gradient of CE(A(x), argmax B(x)), B's that of CE(B(x), argmax A(x))."""
    torch.manual_seed(1)
    net_a = pixel_classifier([[0.0], [1.0]], bias=[0.1, 0.0])
    net_b = pixel_classifier([[0.0], [-1.0]], bias=[0.0, 0.3])
    images = torch.randn(3, 1, 5, 5)
    run_one_step(
        net_a, net_b, batch(images, images, 1), threshold=0.0, fixmatch_weight=0.0, loss_function=no_supervised_loss
    )
    for student, teacher in ((net_a, net_b), (net_b, net_a)):
        reference = pixel_classifier(student.weight.detach().view(2, 1).tolist(), student.bias.detach().tolist())
        target = teacher(images).argmax(1).detach()
        (1.5 * F.cross_entropy(reference(images), target)).backward()
        torch.testing.assert_close(student.weight.grad, reference.weight.grad)
        torch.testing.assert_close(student.bias.grad, reference.bias.grad)


def confident_maps() -> tuple[LogitMap, LogitMap]:
    """Foreground probabilities per pixel: A 0.95, 0.6, 0.6, 0.95; B 0.97, 0.97, 0.55, 0.55 (two classes, 1x4)."""

    def logits(p: list[float]) -> torch.Tensor:
        p = torch.tensor(p)
        return torch.stack([torch.zeros(4), torch.log(p / (1 - p))]).view(1, 2, 1, 4)

    return LogitMap(logits([0.95, 0.6, 0.6, 0.95])), LogitMap(logits([0.97, 0.97, 0.55, 0.55]))


def pixel_gradients(network: LogitMap) -> list[float]:
    return network.logits.grad.abs().sum(dim=1).flatten().tolist()


@pytest.mark.parametrize(
    "term, tau, grad_a, grad_b",
    [
        # CPS: A is trained where B is confident (pixels 0, 1), B where A is confident (0, 3)
        ("cps", 0.9, [True, True, False, False], [True, False, False, True]),
        # FixMatch: each network where it is confident itself
        ("fixmatch", 0.9, [True, False, False, True], [True, True, False, False]),
        # tau = 0 (the official code): every pixel
        ("cps", 0.0, [True] * 4, [True] * 4),
        ("fixmatch", 0.0, [True] * 4, [True] * 4),
    ],
)
def test_masked_pixels_contribute_no_gradient(term: str, tau: float, grad_a: list, grad_b: list) -> None:
    net_a, net_b = confident_maps()
    images = torch.zeros(2, 1, 1, 4)
    weights = {"cps_weight": 1.0 if term == "cps" else 0.0, "fixmatch_weight": 1.0 if term == "fixmatch" else 0.0}
    trainer = run_one_step(
        net_a, net_b, batch(images, images, 1), threshold=tau, loss_function=no_supervised_loss, **weights
    )
    assert [g > 0 for g in pixel_gradients(net_a)] == grad_a
    assert [g > 0 for g in pixel_gradients(net_b)] == grad_b
    assert [g for g, kept in zip(pixel_gradients(net_a), grad_a) if not kept] == [0.0] * grad_a.count(False)
    expected_fraction = 0.5 if tau else 1.0
    assert trainer.state.output[0]["confident_fraction_a"] == trainer.state.output[0]["confident_fraction_b"]
    assert trainer.state.output[0]["confident_fraction_a"] == expected_fraction


@pytest.mark.parametrize("reduction, denominator", [("mean", 8), ("confident", 4)])
def test_unsupervised_terms_are_averaged_over_every_pixel(reduction: str, denominator: int) -> None:
    """tau = 0.9 keeps two of A's and two of B's four pixels in each of the two images (eight pixels).

    Default (FixMatch / TorchSemiSeg, ``(mask * loss).mean()``): the masked sum over all 8 pixels; ``"confident"``
    (ours): over the 4 kept ones, twice as large.
    """
    net_a, net_b = confident_maps()
    images = torch.zeros(2, 1, 1, 4)
    data = batch(images, images, 1)
    options = {} if reduction == "mean" else {"reduction": reduction}  # "mean": the trainer's default
    out = run_one_step(net_a, net_b, data, threshold=0.9, **options).state.output[0]
    # every pseudo-label is foreground; B keeps pixels 0, 1 (0.97), A keeps 0, 3 (0.95)
    cps_a = -2 * (math.log(0.95) + math.log(0.6)) / denominator  # A's loss where B is confident
    cps_b = -2 * (math.log(0.97) + math.log(0.55)) / denominator  # B's loss where A is confident
    fixmatch_a = -2 * (2 * math.log(0.95)) / denominator  # strong = weak view here
    assert out["loss_cps_a"].item() == pytest.approx(cps_a, rel=1e-5)
    assert out["loss_cps_b"].item() == pytest.approx(cps_b, rel=1e-5)
    assert out["loss_fixmatch_a"].item() == pytest.approx(fixmatch_a, rel=1e-5)
    if reduction == "mean":
        assert out["loss_cps_a"].item() == pytest.approx(0.14053, abs=1e-5)  # by hand: (0.05129 + 0.51083) / 4
    with pytest.raises(ValueError, match="reduction"):
        run_one_step(net_a, net_b, data, reduction="sum")


@pytest.mark.parametrize("how", ["valid_key", "label_255"])
def test_padded_pixels_count_in_no_loss(how: str) -> None:
    """Pixel 3 is padding in both images (label 255 or a 0 in the batch's ``valid``): no gradient from the
    supervised, CPS or FixMatch term, and the terms are means over the six valid pixels (tau = 0)."""
    net_a, net_b = confident_maps()
    images = torch.zeros(2, 1, 1, 4)
    data = batch(images, images, 1)
    data["label"] = torch.tensor([1.0, 0.0, 1.0, 1.0 if how == "valid_key" else 255.0]).view(1, 1, 1, 4)
    valid = torch.ones(2, 1, 1, 4)
    valid[:, :, :, 3] = 0.0
    if how == "valid_key":
        data["valid"] = valid  # e.g. a rotated-in corner the label does not mark
    else:
        data["valid"] = torch.cat([torch.ones(1, 1, 1, 4), valid[1:]])  # the labeled image says it by its label
    trainer = run_one_step(net_a, net_b, data, threshold=0.0)
    for network in (net_a, net_b):
        gradients = pixel_gradients(network)
        assert gradients[3] == 0.0 and all(g > 0 for g in gradients[:3])
    out = trainer.state.output[0]
    p_a = [0.95, 0.6, 0.6]
    sup_a = -(math.log(0.95) + math.log(0.4) + math.log(0.6)) / 3  # labels 1, 0, 1 on the valid pixels
    cps_a = -2 * sum(math.log(p) for p in p_a) / 6  # every pseudo-label of B is foreground
    assert out["loss_sup_a"].item() == pytest.approx(sup_a, rel=1e-5)
    assert out["loss_cps_a"].item() == pytest.approx(cps_a, rel=1e-5)
    assert out["loss_cps_a"].item() == pytest.approx(0.35765, abs=1e-5)  # by hand: (0.05129 + 2 * 0.51083) / 3
    assert out["confident_fraction_a"] == 1.0  # tau = 0: every valid pixel, padding not counted


def test_valid_masks_of_another_shape_are_an_error() -> None:
    net_a, net_b = confident_maps()
    data = batch(torch.zeros(2, 1, 1, 4), torch.zeros(2, 1, 1, 4), 1)
    data["valid"] = torch.ones(2, 1, 1, 3)
    with pytest.raises(ValueError, match="validity masks"):
        run_one_step(net_a, net_b, data)


def test_all_pixels_masked_gives_zero_unsupervised_loss() -> None:
    net_a, net_b = confident_maps()
    images = torch.zeros(2, 1, 1, 4)
    trainer = run_one_step(net_a, net_b, batch(images, images, 1), threshold=1.0, loss_function=no_supervised_loss)
    out = trainer.state.output[0]
    assert out["loss"].item() == 0.0 and out["confident_fraction_a"] == 0.0
    assert torch.count_nonzero(net_a.logits.grad) == 0 and torch.count_nonzero(net_b.logits.grad) == 0


def test_sigmoid_heads() -> None:
    torch.manual_seed(2)
    net_a = pixel_classifier([[1.0]])
    net_b = pixel_classifier([[-1.5]], bias=[0.2])
    images = torch.randn(4, 1, 4, 4)
    strong = images + 0.3
    data = batch(images, strong, 2)
    out = run_one_step(net_a, net_b, data, sigmoid=True, threshold=0.0).state.output[0]
    with torch.no_grad():
        y_b = (net_b(images) > 0).float()
        torch.testing.assert_close(
            out["loss_sup_a"], F.binary_cross_entropy_with_logits(net_a(images[:2]), data["label"])
        )
        torch.testing.assert_close(out["loss_cps_a"], F.binary_cross_entropy_with_logits(net_a(images), y_b))
        torch.testing.assert_close(out["loss_fixmatch_b"], F.binary_cross_entropy_with_logits(net_b(strong), y_b))


def test_multiclass_softmax_updates_both_networks() -> None:
    torch.manual_seed(3)
    net_a, net_b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
    before = [net_a.weight.clone(), net_b.weight.clone()]
    images = torch.randn(4, 3, 8, 8)
    trainer = run_one_step(net_a, net_b, batch(images, images * 0.5, 2, num_classes=4), lr=0.1, threshold=0.5)
    assert torch.isfinite(trainer.state.output[0]["loss"])
    assert not torch.equal(net_a.weight, before[0]) and not torch.equal(net_b.weight, before[1])


def test_consistency_on_unlabeled_only() -> None:
    torch.manual_seed(4)
    net_a = pixel_classifier([[0.0], [1.0]])
    net_b = pixel_classifier([[0.0], [-1.0]])
    images = torch.randn(4, 1, 3, 3)
    out = run_one_step(net_a, net_b, batch(images, images, 2), threshold=0.0, consistency_on_labeled=False)
    with torch.no_grad():
        expected = F.cross_entropy(net_a(images[2:]), net_b(images[2:]).argmax(1))
    torch.testing.assert_close(out.state.output[0]["loss_cps_a"], expected)


def test_errors() -> None:
    net = pixel_classifier([[0.0], [1.0]])
    images = torch.randn(2, 1, 3, 3)
    data = batch(images, images, 1)
    del data["image_strong"]
    with pytest.raises(ValueError, match="RandStrongViewd"):
        run_one_step(net, pixel_classifier([[0.0], [1.0]]), data)
    run_one_step(net, pixel_classifier([[0.0], [1.0]]), data, fixmatch_weight=0.0)  # plain CPS needs no strong view
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    common = {"device": "cpu", "max_epochs": 1, "train_data_loader": [data], "network": net, "optimizer": optimizer}
    with pytest.raises(ValueError, match="another network"):
        DFCPSTrainer(**common, network_b=net, optimizer_b=optimizer)
    with pytest.raises(ValueError, match="non-negative"):
        DFCPSTrainer(**common, network_b=nn.Conv2d(1, 2, 1), optimizer_b=optimizer, cps_weight=-1.0)
    with pytest.raises(ValueError, match="tau"):
        DFCPSTrainer(**common, network_b=nn.Conv2d(1, 2, 1), optimizer_b=optimizer, threshold=2.0)


# ---------------------------------------------------------------------------------------------------- resume
def loader(epoch_length: int) -> LabeledUnlabeledLoader:
    generator = torch.Generator().manual_seed(0)

    def cases(count: int, labeled: bool) -> list[dict]:
        items = []
        for _ in range(count):
            image = torch.randn(1, 8, 8, generator=generator)
            item = {"image": image, "image_strong": image + 0.1}
            if labeled:
                item["label"] = (image > 0).float()
            items.append(item)
        return items

    return LabeledUnlabeledLoader(
        DataLoader(Dataset(cases(4, True)), batch_size=2, shuffle=True, drop_last=True),
        DataLoader(Dataset(cases(4, False)), batch_size=2, shuffle=True, drop_last=True),
        epoch_length=epoch_length,
        extra_keys="image_strong",
    )


def setup(seed: int, ckpt_dir: Path, epoch_length: int, resume: bool) -> tuple[DFCPSTrainer, dict]:
    torch.manual_seed(seed)
    ensemble = ProbabilityEnsemble([nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1)])
    net_a, net_b = ensemble.networks
    objects = {
        "network": ensemble,
        "optimizer_a": torch.optim.SGD(net_a.parameters(), lr=0.1, momentum=0.9),
        "optimizer_b": torch.optim.SGD(net_b.parameters(), lr=0.1, momentum=0.9),
    }
    objects["lr_scheduler_a"] = torch.optim.lr_scheduler.PolynomialLR(objects["optimizer_a"], 4 * epoch_length, 0.9)
    objects["lr_scheduler_b"] = torch.optim.lr_scheduler.PolynomialLR(objects["optimizer_b"], 4 * epoch_length, 0.9)
    handlers = [
        ResumeCheckpointLoader(str(ckpt_dir), dict(objects), engine_key="trainer", enabled=resume),
        LrScheduleHandler(objects["lr_scheduler_a"], epoch_level=False, print_lr=False),
        LrScheduleHandler(objects["lr_scheduler_b"], epoch_level=False, print_lr=False),
        AtomicCheckpointSaver(str(ckpt_dir), dict(objects), engine_key="trainer", save_interval=1, n_saved=1),
    ]
    trainer = DFCPSTrainer(
        device="cpu",
        max_epochs=4,
        epoch_length=epoch_length,
        train_data_loader=loader(epoch_length),
        network=net_a,
        optimizer=objects["optimizer_a"],
        network_b=net_b,
        optimizer_b=objects["optimizer_b"],
        threshold=0.6,
        train_handlers=handlers,
    )
    return trainer, objects


def state_of(objects: dict) -> dict:
    return {name: copy.deepcopy(obj.state_dict()) for name, obj in objects.items()}


def assert_same(saved: dict, restored: dict) -> None:
    assert saved.keys() == restored.keys()
    for key in saved:
        if isinstance(saved[key], dict):
            assert_same(saved[key], restored[key])
        elif isinstance(saved[key], torch.Tensor):
            torch.testing.assert_close(restored[key], saved[key], msg=key)
        elif isinstance(saved[key], list) and saved[key] and isinstance(saved[key][0], dict):
            for one, other in zip(saved[key], restored[key]):
                assert_same(one, other)
        else:
            assert restored[key] == saved[key], key


def test_resume_restores_both_networks_optimizers_and_schedulers(tmp_path: Path) -> None:
    epoch_length = 3
    first, objects = setup(0, tmp_path, epoch_length, resume=False)
    first.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda engine: engine.terminate())
    first.run()
    saved = torch.load(next(tmp_path.glob("checkpoint_*=2.pt")), weights_only=True)
    assert {"network", "optimizer_a", "optimizer_b", "lr_scheduler_a", "lr_scheduler_b", "trainer"} <= set(saved)
    assert_same(state_of(objects), {k: saved[k] for k in objects})

    second, fresh = setup(1, tmp_path, epoch_length, resume=True)  # other initial weights
    assert not torch.equal(fresh["network"].networks[1].weight, objects["network"].networks[1].weight)
    restored = {}
    second.add_event_handler(Events.STARTED, lambda engine: restored.update(state_of(fresh)))
    second.run()
    assert_same({k: saved[k] for k in objects}, restored)  # both networks, both optimizers, both schedulers
    assert second.state.iteration == 4 * epoch_length
    assert fresh["lr_scheduler_a"].last_epoch == fresh["lr_scheduler_b"].last_epoch == 4 * epoch_length
