"""The multi-discriminator trainer: one iteration checked against the same step written out by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from monai.engines.utils import IterationEvents

from common.engines import DiscriminatorSpec, MultiDiscriminatorTrainer


class TinyDiscriminator(torch.nn.Module):
    """Patch logits of a one-channel map (and, with two inputs, of a map and an image, as ASE-Net's D)."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(in_channels, 1, 3, padding=1)
        self.calls: list[int] = []

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        self.calls.append(len(inputs))
        return [torch.zeros(1), self.conv(torch.cat(inputs, dim=1))]  # features first, logits last (MONAI style)


def make_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, 6, 6, 6, generator=generator)
    return {"image": image, "label": (image > 0.5).float()}


def supervised(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(pred, label)


def foreground(outputs):
    return outputs["label"], torch.sigmoid(outputs["pred"])


def build(discriminators, lr: float = 0.1) -> tuple[MultiDiscriminatorTrainer, torch.nn.Module]:
    torch.manual_seed(1)
    segmenter = torch.nn.Conv3d(1, 1, 3, padding=1)
    trainer = MultiDiscriminatorTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[make_batch()],
        network=segmenter,
        optimizer=torch.optim.SGD(segmenter.parameters(), lr=lr),
        loss_function=supervised,
        discriminators=discriminators,
        decollate=False,
    )
    return trainer, segmenter


def spec(name: str, weight: float, inputs=foreground, in_channels: int = 1) -> DiscriminatorSpec:
    torch.manual_seed(hash(name) % 1000)
    network = TinyDiscriminator(in_channels)
    return DiscriminatorSpec(name, network, torch.optim.SGD(network.parameters(), lr=0.2), inputs, weight=weight)


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy(torch.sigmoid(logits), torch.full_like(logits, float(real)))


def test_one_iteration_equals_the_step_written_by_hand() -> None:
    """Discriminators first (on the segmenter's predictions before its update), then the segmenter through the
    updated, frozen discriminators: the order of ASE-Net's official train_ASE-Net_3D.py."""
    d1, d2 = spec("d1", 0.3), spec("d2", 0.7)
    trainer, segmenter = build([d1, d2])
    g0 = copy.deepcopy(segmenter)
    ds0 = [copy.deepcopy(d1.network), copy.deepcopy(d2.network)]
    trainer.run()
    output = trainer.state.output[0]
    batch = make_batch()

    # each discriminator: real -> 1, the fake of the segmenter before its step -> 0, averaged, one SGD step
    with torch.no_grad():
        fake = torch.sigmoid(g0(batch["image"]))
    ds1 = []
    for name, d0, spec_ in (("d1", ds0[0], d1), ("d2", ds0[1], d2)):
        d_loss = 0.5 * (bce(d0(batch["label"])[-1], True) + bce(d0(fake)[-1], False))
        assert output[f"d_{name}"].item() == pytest.approx(d_loss.item(), rel=1e-5)
        d_grads = torch.autograd.grad(d_loss, list(d0.parameters()))
        d_new = copy.deepcopy(d0)
        with torch.no_grad():
            for p, grad in zip(d_new.parameters(), d_grads):
                p.sub_(0.2 * grad)
        for p_new, p1 in zip(d_new.parameters(), spec_.network.parameters()):
            torch.testing.assert_close(p1, p_new)  # the segmenter's step below gave it no gradient
            assert p1.requires_grad  # unfrozen again
        ds1.append(d_new)

    # the segmenter: supervised + weighted adversarial terms through the updated discriminators, one SGD step
    pred = g0(batch["image"])
    terms = {"supervised": supervised(pred, batch["label"])}
    for name, weight, d in (("d1", 0.3, ds1[0]), ("d2", 0.7, ds1[1])):
        terms[f"adv_{name}"] = weight * bce(d(torch.sigmoid(pred))[-1], True)
    total = sum(terms.values())
    grads = torch.autograd.grad(total, list(g0.parameters()))
    for name, value in terms.items():
        assert output[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert output["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    for p0, grad, p1 in zip(g0.parameters(), grads, segmenter.parameters()):
        torch.testing.assert_close(p1, p0 - 0.1 * grad)


def test_without_discriminators_it_is_supervised_training() -> None:
    trainer, segmenter = build([])
    g0 = copy.deepcopy(segmenter)
    trainer.run()
    batch = make_batch()
    loss = supervised(g0(batch["image"]), batch["label"])
    assert trainer.state.output[0]["loss"].item() == pytest.approx(loss.item(), rel=1e-6)
    assert set(trainer.state.output[0]) == {"image", "label", "pred", "loss", "supervised"}


def test_backward_completed_sees_this_steps_gradients_before_the_update() -> None:
    """As in MONAI's trainers: a gradient handler (clipping, norms) acts between backward and step."""
    trainer, segmenter = build([spec("d1", 0.1)])
    w0 = segmenter.weight.detach().clone()
    seen: dict = {}

    def record(engine) -> None:
        seen["grad"] = segmenter.weight.grad is not None and bool(segmenter.weight.grad.abs().sum() > 0)
        seen["unchanged"] = torch.equal(segmenter.weight.detach(), w0)

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, record)
    trainer.run()
    assert seen == {"grad": True, "unchanged": True}
    assert not torch.equal(segmenter.weight.detach(), w0)
    assert not any(v.requires_grad for v in trainer.state.output[0].values() if isinstance(v, torch.Tensor))


def test_discriminators_with_several_inputs_as_in_ase_net() -> None:
    """A discriminator that takes (prediction, image), as ASE-Net's D1 and D2 do."""

    def labeled_vs_unlabeled(outputs):
        image = outputs["image"]
        prediction = torch.sigmoid(outputs["pred"])
        return (prediction[:1], image[:1]), (prediction[1:], image[1:])

    d = spec("d1", 1.0, inputs=labeled_vs_unlabeled, in_channels=2)
    trainer, _ = build([d])
    trainer.run()
    assert d.network.calls == [2, 2, 2]  # its own step on real, then on fake (apart); then frozen on the fakes
    assert torch.isfinite(trainer.state.output[0]["d_d1"]) and "adv_d1" in trainer.state.output[0]


def test_key_inputs_and_errors() -> None:
    d = spec("d1", 1.0, inputs=("label", "missing"))
    trainer, _ = build([d])
    with pytest.raises(KeyError, match="no output \\['missing'\\]"):
        trainer.run()
    with pytest.raises(ValueError, match="unique"):
        build([spec("d", 1.0), spec("d", 1.0)])
    with pytest.raises(ValueError, match="pair"):
        DiscriminatorSpec("x", TinyDiscriminator(), None, inputs=("only_one",))
    with pytest.raises(ValueError, match="non-negative"):
        DiscriminatorSpec("x", TinyDiscriminator(), None, inputs=("a", "b"), weight=-1)


class NormDropoutDiscriminator(torch.nn.Module):
    """Conv -> batch norm -> dropout -> conv: its output depends on its mode (the case the official code orders)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm3d(4)
        self.drop = torch.nn.Dropout3d(0.5)
        self.out = torch.nn.Conv3d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.norm(self.conv(x))))


def test_modes_and_order_of_the_updates_with_batch_norm_and_dropout() -> None:
    """D first (train mode, real and fake in separate passes, on fakes of the segmenter in eval mode without grad),
    then the segmenter (train mode) through D frozen in eval mode: recorded by hooks. Fails on the old order."""
    torch.manual_seed(3)
    d = NormDropoutDiscriminator()
    d_spec = DiscriminatorSpec("d1", d, torch.optim.SGD(d.parameters(), lr=0.2), foreground)
    segmenter = torch.nn.Sequential(
        torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.BatchNorm3d(2), torch.nn.Dropout3d(0.5), torch.nn.Conv3d(2, 1, 1)
    )
    optimizer = torch.optim.SGD(segmenter.parameters(), lr=0.1)
    trainer = MultiDiscriminatorTrainer(
        "cpu", 1, [make_batch()], segmenter, optimizer, supervised, [d_spec], decollate=False
    )
    events: list[tuple] = []

    def record(name: str):
        def hook(module, args):
            frozen = not any(p.requires_grad for p in module.parameters())
            events.append((name, module.training, torch.is_grad_enabled(), frozen, args[0].clone()))

        return hook

    segmenter.register_forward_pre_hook(record("segmenter"))
    d.register_forward_pre_hook(record("d"))
    d_spec.optimizer.register_step_pre_hook(lambda *_: events.append(("step d",)))
    optimizer.register_step_pre_hook(lambda *_: events.append(("step segmenter",)))
    d_conv0, segmenter0 = copy.deepcopy(d.conv), copy.deepcopy(segmenter).eval()
    trainer.run()

    summary = [e[:4] if len(e) > 1 else e for e in events]
    assert summary == [
        ("segmenter", False, False, False),  # the fakes for D: segmenter in eval mode, no grad
        ("d", True, True, False),  # D's own step, train mode: the real ...
        ("d", True, True, False),  # ... and the fake, in a pass of its own
        ("step d",),
        ("segmenter", True, True, False),  # the segmenter step, train mode
        ("d", False, True, True),  # its adversarial term: D frozen and in eval mode (grad flows to the fakes)
        ("step segmenter",),
    ]
    batch = make_batch()
    real_input, fake_input = events[1][4], events[2][4]
    torch.testing.assert_close(real_input, batch["label"])
    assert fake_input.shape == real_input.shape  # not one mixed [real; fake] batch
    with torch.no_grad():  # the fake: the segmenter before its step, in eval mode (running BN stats, no dropout)
        torch.testing.assert_close(fake_input, torch.sigmoid(segmenter0(batch["image"])))
    # D's running statistics: one momentum update from the real batch, one from the fake; none from the eval pass
    with torch.no_grad():
        mean_real = d_conv0(real_input).mean(dim=(0, 2, 3, 4))
        mean_fake = d_conv0(fake_input).mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(d.norm.running_mean, 0.9 * (0.1 * mean_real) + 0.1 * mean_fake)
    assert d.norm.num_batches_tracked.item() == 2
