"""Seconds per UG-MCL training iteration at the LA protocol's patch size, through the bundle's own engine.

One iteration is the whole UG-MCL step of ``common.engines.UGMCLTrainer``: the student's forward and backward pass on
the batch, the teacher's noisy pass, the teacher's T Monte-Carlo passes for the uncertainty, the losses, the SGD
update, and the EMA teacher update (``common.handlers.EMATeacher``). Data are random tensors already in memory, so the
figure is compute only. The first iterations are warm-up and not counted.

Usage::

    python benchmarks/ugmcl_step_time.py                              # 112x112x80, batch 4 = 2 labeled + 2 unlabeled
    python benchmarks/ugmcl_step_time.py --iterations 5 --device cuda  # on a GPU
    python benchmarks/ugmcl_step_time.py --patch 96 96 96              # the BraTS patch
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from monai.data import DataLoader, Dataset
from timing import IterationTimer, describe_machine

from common.data import LabeledUnlabeledLoader
from common.engines import UGMCLTrainer
from common.handlers import EMATeacher, RampScheduler
from common.inferers import MCUncertaintyEstimator
from common.networks import DualTaskVNet


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch", type=int, nargs=3, default=[112, 112, 80], help="patch size (LA: 112 112 80)")
    parser.add_argument("--batch", type=int, default=4, help="cases per iteration (LA: 4)")
    parser.add_argument("--labeled", type=int, default=2, help="labeled cases per iteration (LA: 2)")
    parser.add_argument("--passes", type=int, default=8, help="Monte-Carlo passes T (8)")
    parser.add_argument("--features", type=int, default=16, help="V-Net base features (16)")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    size = tuple(args.patch)
    labeled = [{"image": torch.randn(1, *size), "label": (torch.rand(1, *size) > 0.9).float()} for _ in range(2)]
    unlabeled = [{"image": torch.randn(1, *size)} for _ in range(2)]
    total = args.warmup + args.iterations
    loader = LabeledUnlabeledLoader(
        DataLoader(Dataset(labeled * args.labeled), batch_size=args.labeled, drop_last=True),
        DataLoader(
            Dataset(unlabeled * (args.batch - args.labeled)), batch_size=args.batch - args.labeled, drop_last=True
        ),
        epoch_length=total,
    )
    network = DualTaskVNet(features=args.features).to(device)
    teacher = EMATeacher(network, alpha=0.99)
    trainer = UGMCLTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4),
        teacher=teacher.ema_model,
        uncertainty=MCUncertaintyEstimator(num_passes=args.passes, passes_per_batch=2 if args.passes % 2 == 0 else 1),
        train_handlers=[
            RampScheduler("consistency_weight", length=40, end_value=0.1, step_size=150),
            RampScheduler("uncertainty_threshold", length=6000, start_value=0.75 * math.log(2), end_value=math.log(2)),
            teacher,
        ],
        amp=args.amp,
    )
    timer = IterationTimer(device, digits=2)
    timer.attach(trainer)
    trainer.run()
    print(
        f"UG-MCL iteration, patch {'x'.join(map(str, size))}, batch {args.batch} = {args.labeled} labeled + "
        f"{args.batch - args.labeled} unlabeled, T = {args.passes}, V-Net features {args.features}: "
        f"{timer.summary(args.warmup)} [{describe_machine(device)}]"
    )
    hours = 6000 * statistics.mean(timer.timed(args.warmup)) / 3600
    print(f"6000 iterations (the LA protocol) at this speed: {hours:.1f} h")


if __name__ == "__main__":
    main()
