"""Seconds per DMGSA training iteration, with the bundle's own components, at the paper's or the quick patch size.

One iteration is the whole step of ``common.engines.DMGSATrainer``: cube masking of the batch, the MONR targets,
the forward and backward pass of the network with its GMGS blocks and reconstruction head, the supervised,
reconstruction, separation and adversarial terms, the AdamW step, and one step per discriminator. The components
come from ``bundles/dmgsa/configs/train.json`` (layered with ``quick.json`` for ``--quick``), so the figure is the
bundle's; the data are random tensors already in memory (compute only). The first iterations are warm-up.

Usage (from the repository root)::

    python benchmarks/dmgsa_step_time.py                     # paper network, batch 2 x 128 x 96 x 144
    python benchmarks/dmgsa_step_time.py --quick             # quick.json: widths 8-64, batch 2 x 32^3
    python benchmarks/dmgsa_step_time.py --device cuda --amp  # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from ignite.engine import Events

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="layer configs/quick.json (the CPU-minute setting)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--mask_ratio", type=float, default=0.35, help="the mask ratio of the timed iterations")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from monai.bundle import ConfigParser

    from common.engines import DMGSATrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = ROOT / "bundles" / "dmgsa" / "configs"
    config = ConfigParser()
    config.read_config([str(configs / "train.json")] + ([str(configs / "quick.json")] if args.quick else []))
    config["bundle_root"] = str(configs.parent)
    config["device"] = f"$torch.device('{args.device}')"
    size = tuple(config["patch_size"])
    batch = config["batch_size"]
    torch.manual_seed(0)
    label = torch.zeros(batch, 1, *size)
    label[:, :, size[0] // 2 - 3 : size[0] // 2 + 3, size[1] // 2 - 3 : size[1] // 2 + 3, :] = 1.0  # a tube
    data = [{"image": torch.rand(batch, 1, *size), "label": label}] * (args.warmup + args.iterations)

    trainer = DMGSATrainer(
        device=torch.device(args.device),
        max_epochs=1,
        train_data_loader=data,
        network=config.get_parsed_content("train_network"),
        optimizer=config.get_parsed_content("optimizer"),
        loss_function=config.get_parsed_content("loss"),
        discriminators=config.get_parsed_content("discriminators"),
        masking=config.get_parsed_content("masking"),
        targets=config.get_parsed_content("monr"),
        reconstruction_weight=config["reconstruction_weight"],
        separation_weight=config["separation_weight"],
        amp=args.amp,
    )
    trainer.state.mask_ratio = args.mask_ratio
    times: list[float] = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: times.append(time.perf_counter()))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: times.append(time.perf_counter() - times.pop()))
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: setattr(e.state, "mask_ratio", args.mask_ratio))
    trainer.run()
    timed = times[args.warmup :]
    parameters = sum(p.numel() for p in config.get_parsed_content("network_def").parameters())
    figures = {
        "config": "train.json + quick.json" if args.quick else "train.json",
        "batch": [batch, 1, *size],
        "network_parameters": parameters,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "seconds_per_iteration": statistics.median(timed),
        "all": timed,
    }
    print(
        f"DMGSA step ({figures['config']}; batch {batch} x {'x'.join(map(str, size))}; "
        f"network {parameters / 1e6:.2f} M parameters; {args.device}, {figures['threads']} threads): "
        f"median {figures['seconds_per_iteration']:.2f} s "
        f"per iteration over {len(timed)} ({', '.join(f'{t:.2f}' for t in timed)})"
    )
    return figures


if __name__ == "__main__":
    main()
