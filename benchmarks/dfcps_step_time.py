"""Seconds per DFCPS training iteration, through the bundle's own engine and networks.

One iteration is the whole step of ``common.engines.DFCPSTrainer``: both DeepLabv3+ ResNet-50 networks' forward
passes on the weak views of the batch (labeled and unlabeled images), on the strong views, the pseudo-labels and
masked losses, one backward pass and both SGD updates. Data are random tensors already in memory, so the figure is
compute only. The first iterations are warm-up and not counted. The parameter count of one network is printed too.

Usage::

    python benchmarks/dfcps_step_time.py                               # 256x256, 8 labeled + 8 unlabeled
    python benchmarks/dfcps_step_time.py --size 512                    # the recipe's crop size
    python benchmarks/dfcps_step_time.py --iterations 5 --device cuda --amp   # on a GPU
"""

from __future__ import annotations

import argparse

import torch
from monai.data import DataLoader, Dataset
from timing import IterationTimer, describe_machine

from common.data import LabeledUnlabeledLoader
from common.engines import DFCPSTrainer
from common.networks import DeepLabV3Plus


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (the recipe: 512)")
    parser.add_argument("--labeled", type=int, default=8, help="labeled images per iteration (the official run: 8)")
    parser.add_argument("--unlabeled", type=int, default=8, help="unlabeled images per iteration (8)")
    parser.add_argument("--iterations", type=int, default=1, help="timed iterations")
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
    size = (args.size, args.size)

    def case(labeled: bool) -> dict:
        image = torch.randn(3, *size)
        item = {"image": image, "image_strong": image + 0.1 * torch.randn(3, *size)}
        if labeled:
            item["label"] = (torch.rand(1, *size) > 0.8).float()
        return item

    total = args.warmup + args.iterations
    loader = LabeledUnlabeledLoader(
        DataLoader(Dataset([case(True)] * args.labeled), batch_size=args.labeled, drop_last=True),
        DataLoader(Dataset([case(False)] * args.unlabeled), batch_size=args.unlabeled, drop_last=True),
        epoch_length=total,
        extra_keys="image_strong",
    )
    network_a, network_b = DeepLabV3Plus().to(device), DeepLabV3Plus().to(device)
    parameters = sum(p.numel() for p in network_a.parameters())
    trainer = DFCPSTrainer(
        device=device,
        max_epochs=1,
        epoch_length=total,
        train_data_loader=loader,
        network=network_a,
        optimizer=torch.optim.SGD(network_a.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4),
        network_b=network_b,
        optimizer_b=torch.optim.SGD(network_b.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4),
        amp=args.amp,
    )
    timer = IterationTimer(device, digits=1)
    timer.attach(trainer)
    print(f"DeepLabv3+ (ResNet-50, output stride 16, ASPP 6/12/18, 2 classes): {parameters:,} parameters per network")
    trainer.run()
    print(
        f"DFCPS iteration, {args.size}x{args.size}, {args.labeled} labeled + {args.unlabeled} unlabeled images, two "
        f"networks x (weak + strong) passes: {timer.summary(args.warmup)} [{describe_machine(device)}]"
    )


if __name__ == "__main__":
    main()
