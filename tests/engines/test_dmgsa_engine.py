"""DMGSA's training step: masking from the engine's ratio, MONR targets, every term, and each ablation."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.networks.nets import PatchDiscriminator
from monai.utils.enums import CommonKeys as Keys

from common.engines import DiscriminatorSpec, DMGSATrainer
from common.handlers import DynamicMaskRatio, dynamic_mask_ratio
from common.losses import MaskedSmoothL1Loss
from common.networks import DMGSANet, DMGSATrainingModel
from common.transforms import MultiOrderResponses, RandCubeMask

SIZE = 16


def cases(n: int = 4) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        image = torch.rand(1, SIZE, SIZE, SIZE, generator=generator)
        label = torch.zeros(1, SIZE, SIZE, SIZE)
        label[:, 6:10, 6:10, :] = 1.0
        out.append({"image": image, "label": label})
    return out


def discriminators() -> list[DiscriminatorSpec]:
    specs = []
    for name, channels in (("moni", 2), ("mong", 6)):
        d = PatchDiscriminator(3, 4, channels, num_layers_d=1, norm="INSTANCE")
        specs.append(DiscriminatorSpec(name, d, torch.optim.Adam(d.parameters(), 1e-3), (name, f"{name}_pred"), 0.1))
    return specs


def make_trainer(
    loader, use_gmgs=True, use_monr=True, use_adversarial=True, masking=True, max_epochs=1, handlers=None, **kwargs
):
    torch.manual_seed(0)
    network = DMGSATrainingModel(DMGSANet(channels=(4, 8), use_gmgs=use_gmgs), recon_channels=8 if use_monr else 0)
    return DMGSATrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), 1e-3),
        loss_function=lambda pred, label: torch.nn.functional.cross_entropy(pred, label[:, 0].long()),
        discriminators=discriminators() if use_adversarial else [],
        masking=RandCubeMask(cube_size=4).set_random_state(0) if masking else None,
        targets=MultiOrderResponses() if use_monr else None,
        train_handlers=handlers,
        **kwargs,
    )


class FixedRatio:
    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def attach(self, engine) -> None:
        engine.state.mask_ratio = self.ratio


def stacked(output: list[dict], key: str) -> torch.Tensor:
    return torch.stack([item[key] for item in output])


def test_one_iteration_masks_reconstructs_and_sums_every_term() -> None:
    loader = DataLoader(Dataset(cases(2)), batch_size=2)
    trainer = make_trainer(loader, handlers=[FixedRatio(0.25)])
    seen = {}
    # the last forward pass is the segmenter step whose outputs the state holds (the discriminators' step, if any,
    # runs the network before it)
    trainer.network.register_forward_pre_hook(lambda module, args: seen.update(input=args[0].clone()))
    trainer.run()
    output = trainer.state.output  # decollated: one dict per case
    image, mask = stacked(output, Keys.IMAGE), stacked(output, "mask")
    assert mask.shape == (2, 1, SIZE, SIZE, SIZE)
    assert mask.mean(dim=(1, 2, 3, 4)).tolist() == [0.25, 0.25]  # 16 of the 64 cubes of each case
    assert not torch.equal(mask[0], mask[1])  # each case has its own draw
    torch.testing.assert_close(seen["input"], image * (1 - mask))  # the network saw the masked input
    # the targets come from the unmasked image
    targets = MultiOrderResponses()(image)
    torch.testing.assert_close(torch.cat([stacked(output, "moni"), stacked(output, "mong")], 1), targets)
    prediction = torch.cat([stacked(output, "moni_pred"), stacked(output, "mong_pred")], 1)
    expected = MaskedSmoothL1Loss()(prediction, targets, mask)
    assert float(output[0]["reconstruction"]) == pytest.approx(expected.item(), rel=1e-5)
    terms = ["supervised", "reconstruction", "separation", "adv_moni", "adv_mong"]
    assert float(output[0]["loss"]) == pytest.approx(sum(float(output[0][t]) for t in terms), rel=1e-5)
    assert output[0]["d_moni"] > 0 and output[0]["d_mong"] > 0


def test_the_schedule_reaches_the_batches_with_loader_workers() -> None:
    """The ratio is read from the engine in the training step, so loader worker processes never need it."""
    fractions = []
    loader = DataLoader(Dataset(cases(4)), batch_size=2, num_workers=2)
    trainer = make_trainer(loader, max_epochs=2, handlers=[DynamicMaskRatio(rho=2.0, max_ratio=0.35)])
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: fractions.append((e.state.epoch, stacked(e.state.output, "mask").mean()))
    )
    trainer.run()
    expected_first = round(dynamic_mask_ratio(1, 2) * 64) / 64  # 16 of 64 cubes
    assert [(e, f.item()) for e, f in fractions] == [(1, expected_first)] * 2 + [(2, 0.0)] * 2


def test_masking_without_a_mask_ratio_schedule_is_refused() -> None:
    """A missing ``DynamicMaskRatio`` used to read as ratio 0: no masking and no reconstruction term, silently."""
    loader = DataLoader(Dataset(cases(2)), batch_size=2)
    trainer = make_trainer(loader, handlers=[])
    with pytest.raises(AttributeError, match=r"engine\.state\.mask_ratio is not set: attach common\.handlers\.Dynamic"):
        trainer.run()
    # a custom key is named in the message too
    trainer = make_trainer(loader, handlers=[DynamicMaskRatio()], mask_ratio_key="hidden_fraction")
    with pytest.raises(AttributeError, match=r'state_name="hidden_fraction"'):
        trainer.run()
    # no masking needs no ratio
    make_trainer(loader, handlers=[], masking=False).run()


def test_a_fixed_ratio_from_the_handler_masks_every_epoch() -> None:
    """The "no DMR" ablation: ``DynamicMaskRatio(fixed_ratio=...)`` writes a constant ratio instead of the schedule."""
    fractions = []
    loader = DataLoader(Dataset(cases(2)), batch_size=2)
    trainer = make_trainer(loader, max_epochs=2, handlers=[DynamicMaskRatio(fixed_ratio=0.25)])
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: fractions.append(stacked(e.state.output, "mask").mean().item())
    )
    trainer.run()
    assert fractions == [0.25, 0.25]  # the schedule would give 0 in the last epoch
    assert float(trainer.state.output[0]["reconstruction"]) > 0


@pytest.mark.parametrize(
    "switch, absent",
    [
        ({"masking": False}, set()),
        ({"use_monr": False, "use_adversarial": False}, {"reconstruction", "moni", "mong_pred"}),
        ({"use_gmgs": False}, {"separation"}),
        ({"separation_weight": 0.0}, {"separation"}),
        ({"use_adversarial": False}, {"adv_moni", "adv_mong", "d_moni", "d_mong"}),
    ],
)
def test_each_component_can_be_left_out(switch: dict, absent: set) -> None:
    loader = DataLoader(Dataset(cases(2)), batch_size=2)
    trainer = make_trainer(loader, handlers=[FixedRatio(0.5)], **switch)
    trainer.run()
    output = trainer.state.output[0]
    assert not absent & set(output)
    assert "supervised" in output and "loss" in output
    if not switch.get("masking", True):
        assert output["mask"].sum() == 0


def test_inconsistent_components_are_refused() -> None:
    loader = DataLoader(Dataset(cases(2)), batch_size=2)
    with pytest.raises(ValueError, match="give targets too"):
        DMGSATrainer("cpu", 1, loader, torch.nn.Identity(), None, None, discriminators=discriminators(), targets=None)
    trainer = make_trainer(loader, use_monr=True, use_adversarial=False, handlers=[FixedRatio(0.25)])
    trainer.targets = None  # a reconstruction head without targets
    with pytest.raises(ValueError, match="both present or both absent"):
        trainer.run()
