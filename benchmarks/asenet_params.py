"""ASE-Net: parameters and FLOPs of the segmenters with and without DyBAC, and seconds per training iteration.

The paper presents DyBAC as a way to keep the segmenter light; this script measures what DyBAC does to the two
backbones of ``common.networks.asenet`` (``DyBACVNet`` at the 3D patch 112x112x80, ``DyBACUNet`` at 256x256) and to
the discriminator. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-accumulate
of the convolutions and matrix products; normalisation, activations and pooling are not counted). Halve them for the
"MACs" many papers call FLOPs.

``--step`` also times whole ASE-Net iterations (``common.engines.ASENetTrainer``: student passes on the batch and the
noisy unlabeled half, teacher pass, the losses, the Adam step, both discriminators' SGD steps and the EMA update) on
random tensors already in memory, at the paper's shapes; the first iteration is warm-up and not counted.

Usage::

    python benchmarks/asenet_params.py                          # parameters and FLOPs
    python benchmarks/asenet_params.py --step --threads 2       # + CPU seconds per iteration (3D, 112x112x80, batch 4)
    python benchmarks/asenet_params.py --step --device cuda
"""

from __future__ import annotations

import argparse
import statistics

import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from timing import IterationTimer, describe_machine
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from common.data import LabeledUnlabeledLoader
from common.engines import ASENetTrainer, DiscriminatorSpec, d1_inputs, d2_inputs
from common.handlers import DyBACTemperature, EMATeacher, RampScheduler
from common.losses import TwoClassAdversarialLoss
from common.networks import ASENetDiscriminator, DyBACUNet, DyBACVNet


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def flops(net: nn.Module, *inputs: torch.Tensor) -> int:
    """Forward FLOPs of one pass (batch 1) counted by ``FlopCounterMode``."""
    net.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(*inputs)
    return counter.get_total_flops()


def complexity() -> None:
    rows = [
        ("3D V-Net + DyBAC", DyBACVNet(), (1, 1, 112, 112, 80)),
        ("3D V-Net plain", DyBACVNet(use_dybac=False), (1, 1, 112, 112, 80)),
        ("2D U-Net + DyBAC", DyBACUNet(), (1, 3, 256, 256)),
        ("2D U-Net plain", DyBACUNet(use_dybac=False), (1, 3, 256, 256)),
    ]
    print(f"{'network':<22}{'input':>18}{'params (M)':>12}{'GFLOPs':>10}")
    for name, net, shape in rows:
        gflops = flops(net, torch.randn(shape)) / 1e9
        print(f"{name:<22}{'x'.join(map(str, shape[2:])):>18}{parameters(net) / 1e6:>12.3f}{gflops:>10.2f}")
    for dims, shape, pred in ((3, (1, 1, 112, 112, 80), 2), (2, (1, 3, 256, 256), 2)):
        d = ASENetDiscriminator(dims, pred_channels=pred, image_channels=shape[1])
        gflops = flops(d, torch.rand(1, pred, *shape[2:]), torch.randn(shape)) / 1e9
        size = "x".join(map(str, shape[2:]))
        print(f"{f'discriminator {dims}D':<22}{size:>18}{parameters(d) / 1e6:>12.3f}{gflops:>10.2f}")


def step_time(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    size = tuple(args.patch)
    dims = len(size)
    channels = 1 if dims == 3 else 3
    labeled = [{"image": torch.randn(channels, *size), "label": (torch.rand(1, *size) > 0.9).float()}]
    unlabeled = [{"image": torch.randn(channels, *size)}]
    total = args.warmup + args.iterations
    n_u = args.batch - args.labeled
    loader = LabeledUnlabeledLoader(
        DataLoader(Dataset(labeled * args.labeled), batch_size=args.labeled, drop_last=True),
        DataLoader(Dataset(unlabeled * n_u), batch_size=n_u, drop_last=True),
        epoch_length=total,
    )
    segmenter = DyBACVNet(use_dybac=not args.plain) if dims == 3 else DyBACUNet(use_dybac=not args.plain)
    network = segmenter.to(device)
    teacher = EMATeacher(network, alpha=0.99)
    specs = []
    for name, inputs in (("d1", d1_inputs), ("d2", d2_inputs)):
        d = ASENetDiscriminator(dims, pred_channels=2, image_channels=channels).to(device)
        specs.append(
            DiscriminatorSpec(
                name, d, torch.optim.SGD(d.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4), inputs,
                weight=0.5, loss_function=TwoClassAdversarialLoss(), weight_key="consistency_weight",
            )
        )  # fmt: skip
    trainer = ASENetTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3, betas=(0.9, 0.99)),
        teacher=teacher.ema_model,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True, lambda_ce=0.5, lambda_dice=0.5),
        discriminators=specs,
        train_handlers=[
            RampScheduler("consistency_weight", length=40, end_value=1.0, step_size=150),
            DyBACTemperature(
                [network, teacher.ema_model, *(s.network for s in specs)], initial=34.0 if dims == 3 else 30.0
            ),
            teacher,
        ],
        amp=args.amp,
    )
    timer = IterationTimer(device, digits=2)
    timer.attach(trainer)
    trainer.run()
    print(
        f"ASE-Net iteration ({'plain' if args.plain else 'DyBAC'} segmenter), patch {'x'.join(map(str, size))}, batch "
        f"{args.batch} = {args.labeled} labeled + {n_u} unlabeled: {timer.summary(args.warmup)} "
        f"[{describe_machine(device)}]"
    )
    print(f"6000 iterations at this speed: {6000 * statistics.mean(timer.timed(args.warmup)) / 3600:.1f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", action="store_true", help="also time training iterations")
    parser.add_argument("--patch", type=int, nargs="+", default=[112, 112, 80], help="3 sizes (3D) or 2 (2D)")
    parser.add_argument("--batch", type=int, default=4, help="cases per iteration (4)")
    parser.add_argument("--labeled", type=int, default=2, help="labeled cases per iteration (2)")
    parser.add_argument("--plain", action="store_true", help="time the plain backbone instead")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    complexity()
    if args.step:
        step_time(args)


if __name__ == "__main__":
    main()
