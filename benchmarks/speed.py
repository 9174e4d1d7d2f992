"""Training speed, memory, inference latency, data loading and model size of every bundle, through the bundle runner.

For each bundle (every folder under ``bundles/`` with ``configs/quick.json``), two measurements run in separate
processes, so that each one's peak memory is its own:

* ``bundle``: the bundle's training workflow as the runner builds it (``monai.bundle.ConfigWorkflow`` on
  ``train.json`` [+ ``quick.json``], every handler of the config attached: checkpoints, TensorBoard, progress bar,
  schedules, training curves), ``warmup + iterations`` iterations (more epochs where a bundle's epoch is its loader's
  length and shorter than that; the run stops once enough are timed). Seconds per iteration are the gaps between
  consecutive ``ITERATION_COMPLETED`` events after the warm-up (data fetch, handlers and the step), counting only gaps
  inside one epoch that end in a batch of the first batch's shapes (:func:`timed_intervals`): the plain loop repeats
  that one batch, and a last, partial batch is a new shape whose kernels are set up the first time it runs (DMGSA's
  quick epoch, 7 volumes at batch 2, ended in a 1-volume step of 1.41 s against 0.66 s for a full one), so timing it
  would count a first-call cost, not the bundle's overhead; the epoch-end handlers (checkpoints, curves) are left out
  as the plain loop leaves them out. **The plain loop runs in the same process, paired**: at the end of each bundle
  iteration (after every handler of the config) one plain iteration runs, timed on its own and outside the bundle's
  gaps: the next batch of its own iterator over the trainer's loader (what ``for batch in loader`` loads), then the
  plain step (below) on the first batch. Two processes doing the same work differ by up to ~10 % in CPU time on this
  shared machine (CMUNeXt's hand-written loop: 1.28 and 1.42 s per step in two processes; the bundle and the plain
  step interleaved in one process: 1.32 and 1.32 s), which separate processes would count as overhead. The bundle's
  loading is the time between Ignite's ``GET_BATCH_STARTED`` and ``GET_BATCH_COMPLETED`` (wall and CPU), the plain
  loop's its ``next(batches)``: "CPU overhead" compares the two loops with their loading, "CPU overhead without the
  loader" (each loop's CPU seconds per iteration less its loading's) the runner's own cost (Ignite, handlers,
  decollation) against the bare step.
* ``plain``: the same configs parsed in a process of its own, one batch taken from the bundle's training loader, a few
  plain steps over it (the plain side's peak memory; their times stay in the JSON as ``plain_process_*``), then: the
  loader alone (seconds per batch over fresh batches), the validation inferer of the config (sliding window for the
  3D bundles) per validation case, parameters, and forward FLOPs of one sample (``FlopCounterMode``, as
  ``benchmarks/complexity.py`` counts them: convolutions and matrix products, 2 per multiply-accumulate).

The plain step: for MONAI's supervised step (``SupervisedTrainer``, ``common.engines.SupervisedMethodTrainer``)
hand-written PyTorch (zero_grad, forward, loss, backward, step; autocast and a gradient scaler with ``--amp on``). A
method trainer's step (two networks, a teacher, discriminators) is the trainer's own ``_iteration`` called directly
on the batch (in the plain process after the handlers of ``STARTED`` have set the schedules; paired, with the run's
schedules as they are), without Ignite's loop or the handlers; a mean-teacher method's teacher update
(the config's ``EMATeacher``, :func:`teacher_updates`) follows each step, as it follows ``optimizer.step()`` in the
official loops: it is the method's work, not the runner's.

Each side is measured ``--repeats`` times (default 2), alternating in ABBA order (bundle, plain, plain, bundle, ...),
and each figure's median is taken over all its timed iterations; the table also lists the CPU overhead of each
repeat (each bundle process against its own paired steps). Before the pairing, at 6 timed iterations and one
repeat, the CPU overhead of the same bundle moved by about 10 points between runs (UG-MCL +12.7 % and -6.0 %); at 2 x
12 iterations UG-MCL's two repeats read +11.5 % and +2.2 %, and at 2 x 20 CMUNeXt read +15.0 and +19.2 % against a
plain loop of its own process that was 8 % faster than in the run before.

Overhead = bundle seconds per iteration / plain seconds per iteration - 1, in wall-clock seconds and in the process's
CPU seconds (``time.process_time``, all threads): on a shared machine the CPU seconds are the steadier figure, as
other processes' load stretches wall-clock time but not the CPU time a step consumes. Peak memory: the process's
peak resident set size (``resource.getrusage``; on CPU, both include the cached training set) and, on CUDA,
``torch.cuda.max_memory_allocated``.

Usage (from the repository root)::

    python benchmarks/speed.py                                   # every bundle, quick shapes, CPU
    python benchmarks/speed.py --bundles cmunext --iterations 20
    python benchmarks/speed.py --device cuda --amp on --channels_last --schedule paper   # on a GPU

``step <method>`` times one method's own engine instead, at the paper's shapes, on random tensors already in memory
(compute only: no loader, no checkpoints; the first iterations are warm-up), and prints the method's figures: the
parameters of a DFCPS network, the DMGSA network's size and median, the hours of a 6000-iteration run (UG-MCL,
ASE-Net)::

    python benchmarks/speed.py step dfcps [--size 512] [--labeled 8 --unlabeled 8]   # 256x256, 8 + 8 images
    python benchmarks/speed.py step dmgsa [--quick]                 # train.json network, batch 2 x 128 x 96 x 144
    python benchmarks/speed.py step ugmcl [--patch 96 96 96]        # 112x112x80, batch 4 = 2 labeled + 2 unlabeled
    python benchmarks/speed.py step asenet [--plain] [--patch 256 256 --batch 8 --labeled 4]   # DyBAC V-Net, 3D
    python benchmarks/speed.py step ugmcl --iterations 5 --device cuda --amp   # on a GPU

Writes ``<output>/speed.json`` and ``<output>/speed.md`` (default ``benchmarks/results``); ``--report_only`` remakes
the table from ``speed.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    ROOT,
    add_timing_arguments,
    bundles_with,
    config_files,
    display_command,
    load_average,
    phantom_folder,
    short_run_overrides,
)
from timing import IterationTimer, describe_machine

VALIDATION_CASES = 3  # inference latency: median over this many validation cases
# the plain worker's own loop (its peak memory; its times are kept in the JSON only: the table's plain figures are the
# paired steps of the bundle's process)
PLAIN_PROCESS_ITERATIONS = 6
LOADER_BATCHES = 5  # loader throughput: batches drawn from a fresh iterator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="*", default=None, help="bundles (default: all with quick.json)")
    parser.add_argument("--schedule", choices=("quick", "paper"), default="quick", help="quick.json shapes or paper")
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument(
        "--repeats", type=int, default=2, help="measure each side this many times, alternating (medians pooled)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--amp", choices=("on", "off"), default="off", help="mixed precision (CUDA only)")
    parser.add_argument("--channels_last", action="store_true", help="channels-last memory format (2D and 3D)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config id=JSON")
    parser.add_argument("--report_only", action="store_true", help="only remake the table from speed.json")
    parser.add_argument("--worker", choices=("bundle", "plain"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work_dir", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ worker side
def _overrides(args: argparse.Namespace, bundle: str) -> dict[str, Any]:
    phantom = phantom_folder(args.output, bundle, args.schedule)
    iterations = args.warmup + args.iterations  # one epoch
    return {
        **short_run_overrides(bundle, args.work_dir, phantom, args.device, args.amp == "on", 1, iterations),
        "val_interval": 10**6,  # validation is not a training iteration
        "num_workers": 0,
        **{key: _json_or_text(value) for key, value in (item.split("=", 1) for item in args.override)},
    }


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _workflow(args: argparse.Namespace, bundle: str):
    from monai.bundle import ConfigWorkflow

    names = ["train", "quick"] if args.schedule == "quick" else ["train"]
    workflow = ConfigWorkflow(
        config_file=config_files(bundle, names),
        workflow_type="train",
        logging_file=False,
        **_overrides(args, bundle),
    )
    workflow.initialize()
    return workflow


def _channels_last(module, spatial_dims: int) -> None:
    import torch

    module.to(memory_format=torch.channels_last if spatial_dims == 2 else torch.channels_last_3d)


def _spatial_dims(batch: dict) -> int:
    return batch["image"].ndim - 2


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _memory(device: str) -> dict[str, float]:
    import torch

    found = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        found["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return found


def batch_shapes(batch: Any) -> tuple:
    """The shapes of every tensor in a batch (dicts and sequences searched in order): what a step's kernels see."""
    if hasattr(batch, "shape"):
        return (tuple(batch.shape),)
    if isinstance(batch, dict):
        return tuple(shape for key in sorted(batch, key=str) for shape in batch_shapes(batch[key]))
    if isinstance(batch, (list, tuple)):
        return tuple(shape for item in batch for shape in batch_shapes(item))
    return ()


def timed_intervals(records: list[tuple], warmup: int, iterations: int) -> tuple[list[float], list[float]]:
    """The wall and CPU seconds of the iterations to time, from one record per ``ITERATION_COMPLETED``.

    Args:
        records: ``(wall s, CPU s, epoch, batch shapes)`` at the end of each iteration, in order, optionally followed
            by ``(wall s, CPU s)`` of the moment the bundle went on (after the paired plain step run at that
            iteration's end): the next iteration's gap starts there.
        warmup: the first iterations that are not timed.
        iterations: at most this many intervals are returned (the first ones that qualify).

    Returns:
        Two lists of seconds: the gap ending at iteration ``i`` (0-based) is kept when ``i >= warmup``, iteration
        ``i - 1`` ended in the same epoch (an epoch's end handlers and the next loader start are not a step), and
        iteration ``i``'s batch has the shapes of the first batch (a partial last batch is a first call of new shapes).
    """
    if not records:
        return [], []
    first = records[0][3]
    wall, cpu = [], []
    for i in range(max(1, warmup), len(records)):
        before, (w1, c1, e1, shapes) = records[i - 1], records[i][:4]
        w0, c0 = before[4:6] if len(before) >= 6 else before[:2]
        if before[2] == e1 and shapes == first and len(wall) < iterations:
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
    return wall, cpu


def worker_bundle(args: argparse.Namespace, bundle: str) -> dict[str, Any]:
    """Time the training iterations of the bundle's own workflow."""
    from ignite.engine import Events

    workflow = _workflow(args, bundle)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    teachers = teacher_updates(_train_handlers(workflow.parser))
    # the plain loop, run after each iteration: a batch fetched from its own iterator of the trainer's loader, then
    # the plain step (on the first batch, as the plain worker's loop)
    paired: dict[str, Any] = {"step": None, "batches": None, "wall": [], "cpu": [], "fetch_wall": [], "fetch_cpu": []}
    per_epoch = trainer.state.epoch_length  # the loader's length where the bundle sets no epoch_length
    wanted = args.warmup + args.iterations
    if per_epoch is not None and 1 < per_epoch < wanted:
        # each epoch gives per_epoch - 1 in-epoch gaps at most (one fewer with a partial last batch): enough epochs
        trainer.state.max_epochs = max(trainer.state.max_epochs, math.ceil(wanted / max(1, per_epoch - 2)) + 1)
    records: list[tuple[float, float, int, tuple]] = []
    fetch: list[float] = []  # wall s of each batch fetch
    fetch_cpu: list[float] = []  # CPU s of each batch fetch (the loader runs in this process: num_workers 0)
    fetch_start: list[tuple[float, float]] = []

    def _fetched(engine) -> None:
        fetch.append(time.perf_counter() - fetch_start[-1][0])
        fetch_cpu.append(time.process_time() - fetch_start[-1][1])

    trainer.add_event_handler(
        Events.GET_BATCH_STARTED, lambda e: fetch_start.append((time.perf_counter(), time.process_time()))
    )
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, _fetched)

    def _done(engine) -> None:
        _sync(args.device)
        ended = (time.perf_counter(), time.process_time(), engine.state.epoch, batch_shapes(engine.state.batch))
        if paired["step"] is None:  # the plain loop's batch: the first one, as in the plain worker
            paired["step"] = plain_step(trainer, engine.state.batch, args, teachers, in_run=True)
            paired["loader"] = engine.state.dataloader
        went_on = ended[:2]
        if len(paired["wall"]) < wanted:
            start, cpu_start = time.perf_counter(), time.process_time()
            _plain_fetch(paired)
            fetched = (time.perf_counter(), time.process_time())
            paired["step"]()
            _sync(args.device)
            went_on = (time.perf_counter(), time.process_time())
            paired["wall"].append(went_on[0] - start)
            paired["cpu"].append(went_on[1] - cpu_start)
            paired["fetch_wall"].append(fetched[0] - start)
            paired["fetch_cpu"].append(fetched[1] - cpu_start)
        records.append((*ended, *went_on))
        if len(timed_intervals(records, args.warmup, args.iterations)[0]) >= args.iterations:
            engine.terminate()  # enough: the rest of the epochs would time nothing

    trainer.add_event_handler(Events.ITERATION_COMPLETED, _done)  # the last handler: every other one is in the gap
    if args.channels_last:
        trainer.add_event_handler(
            Events.ITERATION_STARTED(once=1),
            lambda e: _channels_last(workflow.parser.get_parsed_content("network"), _spatial_dims(e.state.batch)),
        )
    start = time.perf_counter()
    workflow.run()
    wall = time.perf_counter() - start
    workflow.finalize()
    steps, cpu_steps = timed_intervals(records, args.warmup, args.iterations)
    if not steps:
        raise RuntimeError(f"{bundle}: no full-batch iteration after the {args.warmup} warm-up ones to time")
    timed = slice(args.warmup, args.warmup + args.iterations)
    plain_wall, plain_cpu = paired["wall"][timed], paired["cpu"][timed]
    plain_fetch, plain_fetch_cpu = paired["fetch_wall"][timed], paired["fetch_cpu"][timed]
    return {
        "trainer": type(trainer).__name__,
        "iterations": len(steps),
        "plain_loop": _plain_loop_name(trainer, teachers),
        "plain_s_per_it": statistics.median(plain_wall),
        "plain_cpu_s_per_it": statistics.median(plain_cpu),
        "plain_steps": plain_wall,
        "plain_cpu_steps": plain_cpu,
        "plain_fetch_s_per_it": statistics.median(plain_fetch),
        "plain_fetch_cpu_s_per_it": statistics.median(plain_fetch_cpu),
        "plain_fetch_steps": plain_fetch,
        "plain_fetch_cpu_steps": plain_fetch_cpu,
        "bundle_s_per_it": statistics.median(steps),
        "bundle_cpu_s_per_it": statistics.median(cpu_steps),
        "bundle_fetch_s_per_it": statistics.median(fetch[args.warmup :]),
        "bundle_fetch_cpu_s_per_it": statistics.median(fetch_cpu[args.warmup :]),
        "bundle_run_wall_s": wall,
        "bundle_steps": steps,
        "bundle_cpu_steps": cpu_steps,
        "bundle_fetch_steps": fetch[args.warmup :],
        "bundle_fetch_cpu_steps": fetch_cpu[args.warmup :],
        **_memory(args.device),
    }


def _plain_supervised(trainer, batch: dict, args: argparse.Namespace):
    """The hand-written step of a SupervisedTrainer: forward, loss, backward, SGD step."""
    import torch

    device = torch.device(args.device)
    net, optimizer, loss_fn = trainer.network, trainer.optimizer, trainer.loss_function
    x, y = batch["image"].to(device), batch["label"].to(device)
    if args.channels_last:
        fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
        x = x.contiguous(memory_format=fmt)
    scaler = torch.amp.GradScaler("cuda") if args.amp == "on" else None
    net.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=args.amp == "on"):
            loss = loss_fn(net(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def teacher_updates(handlers: list) -> list:
    """The mean-teacher updates among a trainer's handlers (Ignite ``EMAHandler``, e.g. ``common.handlers.EMATeacher``).

    The teacher's update after every student step is part of a mean-teacher method's step (the official loops of
    UG-MCL and ASE-Net call ``update_ema_variables`` after ``optimizer.step()``), not runner overhead: the plain loop
    runs it too, as the handler does.
    """
    from ignite.handlers import EMAHandler

    return [handler for handler in handlers if isinstance(handler, EMAHandler)]


def _plain_method(trainer, batch: dict, teachers: list | None = None, in_run: bool = False):
    """A method trainer's own step, called in a bare loop (schedules set once by the STARTED handlers).

    Args:
        trainer: the bundle's trainer (its ``_iteration`` is called directly).
        batch: the one batch the loop repeats.
        teachers: EMA handlers (:func:`teacher_updates`) whose teacher update follows each step, momentum first.
        in_run: the step runs between the iterations of the trainer's own run (the bundle worker's paired plain
            step): the run's state and schedules are used as they are, and its iteration counter is left alone.
    """
    from ignite.engine import Events

    if not in_run:
        trainer.state.max_epochs, trainer.state.epoch_length = 1, 10**6
        trainer.state.epoch = 1
        trainer._fire_event(Events.STARTED)
    teachers = list(teachers or [])

    def step() -> None:
        if not in_run:
            trainer.state.iteration += 1
            trainer.state.batch = batch
        output = trainer.state.output
        trainer._iteration(trainer, batch)
        if in_run:  # the run's handlers (the epoch's end) read the run's own output, not the plain step's
            trainer.state.output = output
        for ema in teachers:
            name = getattr(ema, "momentum_name", "ema_momentum")
            scheduler = getattr(ema, "momentum_scheduler", None)
            if scheduler is not None:
                scheduler(trainer)  # EMATeacher's mean-teacher momentum for this iteration
            ema._update_ema_model(trainer, name)

    return step


def _plain_fetch(paired: dict[str, Any]) -> None:
    """The paired plain loop's loading: the next batch of its own iterator over the trainer's loader (a new iterator
    when one ends), as ``for batch in loader`` would load it."""
    if paired["batches"] is not None:
        try:
            next(paired["batches"])
            return
        except StopIteration:
            pass
    paired["batches"] = iter(paired["loader"])
    next(paired["batches"])


def _train_handlers(parser) -> list:
    """The config's ``train#handlers`` (the objects attached to the trainer), or none."""
    return parser.get_parsed_content("train#handlers") if "handlers" in parser.get("train", {}) else []


def _hand_written(trainer) -> bool:
    """Whether the trainer's step is MONAI's supervised step (on any base): timed as hand-written PyTorch."""
    from monai.engines import SupervisedTrainer

    return type(trainer)._iteration is SupervisedTrainer._iteration


def _plain_loop_name(trainer, teachers: list) -> str:
    if _hand_written(trainer):
        return "hand-written PyTorch"
    return f"{type(trainer).__name__}._iteration" + (" + EMA update" if teachers else "")


def plain_step(trainer, batch: dict, args: argparse.Namespace, teachers: list, in_run: bool = False):
    """The plain loop's step over ``batch``: hand-written PyTorch for MONAI's supervised step, else the trainer's own
    ``_iteration`` (:func:`_plain_method`) followed by the teachers' EMA updates."""
    if _hand_written(trainer):
        return _plain_supervised(trainer, batch, args)
    return _plain_method(trainer, batch, teachers, in_run=in_run)


def _flops(network, image) -> float | None:
    """Forward GFLOPs of one sample, counted as benchmarks/complexity.py counts them."""
    import torch
    from complexity import flop_counter_mode

    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            flops, _ = flop_counter_mode(network, image)
    except Exception:  # a network whose forward needs more than an image: not counted
        return None
    finally:
        network.train(was_training)
    return flops / 1e9


def worker_plain(args: argparse.Namespace, bundle: str) -> dict[str, Any]:
    """The bare loop over one batch, then loader, inference, parameters and FLOPs."""
    import torch

    workflow = _workflow(args, bundle)
    parser = workflow.parser
    trainer = parser.get_parsed_content("train#trainer")
    loader = parser.get_parsed_content("train#dataloader")
    batch = next(iter(loader))
    network = parser.get_parsed_content("network")
    if args.channels_last:
        _channels_last(network, _spatial_dims(batch))
    teachers = teacher_updates(_train_handlers(parser))
    step = plain_step(trainer, batch, args, teachers)
    times, cpu_times = [], []
    for i in range(args.warmup + min(args.iterations, PLAIN_PROCESS_ITERATIONS)):
        _sync(args.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        _sync(args.device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)

    fetch = []
    batches = iter(loader)
    while len(fetch) < LOADER_BATCHES:  # a small training set is gone through more than once
        start = time.perf_counter()
        try:
            next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        fetch.append(time.perf_counter() - start)

    inferer = parser.get_parsed_content("validate#inferer")
    device = torch.device(args.device)
    latency = []
    network.eval()
    with torch.no_grad(), torch.autocast(device.type, enabled=args.amp == "on"):
        for i, case in enumerate(parser.get_parsed_content("validate#dataloader")):
            if i >= VALIDATION_CASES:
                break
            image = case["image"].to(device)
            _sync(args.device)
            start = time.perf_counter()
            inferer(image, network)
            _sync(args.device)
            latency.append(time.perf_counter() - start)
    roi = getattr(inferer, "roi_size", None)
    return {
        "plain_loop": _plain_loop_name(trainer, teachers),
        "plain_process_s_per_it": statistics.median(times),
        "plain_process_cpu_s_per_it": statistics.median(cpu_times),
        "plain_process_steps": times,
        "plain_process_cpu_steps": cpu_times,
        "loader_s_per_batch": statistics.median(fetch),
        "batch_shape": list(batch["image"].shape),
        "inferer": type(inferer).__name__ + (f" roi {list(roi)}" if roi is not None else ""),
        "infer_case_shape": list(image.shape),
        "infer_s_per_case": statistics.median(latency),
        "params_m": sum(p.numel() for p in network.parameters()) / 1e6,
        "gflops_per_sample": _flops(network, batch["image"][:1].to(device)),
        **_memory(args.device),
    }


# ------------------------------------------------------------------------------------------------ driver side
def measure(args: argparse.Namespace, bundle: str, mode: str, timeout: float | None = None) -> dict[str, Any]:
    """Run one worker in its own process and return its JSON result.

    Args:
        args: the driver's options (schedule, iterations, device, AMP, channels-last, overrides, output).
        bundle: the bundle's folder name.
        mode: ``"bundle"`` or ``"plain"``.
        timeout: seconds before the worker is killed (``subprocess.TimeoutExpired``); None waits for it.

    Raises:
        RuntimeError: when the worker fails; the message holds the tail of its output.
    """
    with tempfile.TemporaryDirectory(prefix=f"speed_{bundle}_") as work:
        cmd = [sys.executable, __file__, "--worker", mode, "--bundles", bundle, "--work_dir", work]
        cmd += ["--schedule", args.schedule, "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
        cmd += ["--device", args.device, "--amp", args.amp, "--output", str(args.output)]
        cmd += ["--channels_last"] if args.channels_last else []
        cmd += [f"--override={item}" for item in args.override]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{bundle} {mode} measurement failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


POOLED = {  # per side: the median of the pooled per-iteration lists (value key: list key)
    "bundle": {
        "bundle_s_per_it": "bundle_steps",
        "bundle_cpu_s_per_it": "bundle_cpu_steps",
        "bundle_fetch_s_per_it": "bundle_fetch_steps",
        "bundle_fetch_cpu_s_per_it": "bundle_fetch_cpu_steps",
        "plain_s_per_it": "plain_steps",  # the paired plain loop (its loading and step), in the bundle's process
        "plain_cpu_s_per_it": "plain_cpu_steps",
        "plain_fetch_s_per_it": "plain_fetch_steps",
        "plain_fetch_cpu_s_per_it": "plain_fetch_cpu_steps",
    },
    "plain": {"plain_process_s_per_it": "plain_process_steps", "plain_process_cpu_s_per_it": "plain_process_cpu_steps"},
}
PAIRED = ("plain_loop", "plain_s_per_it", "plain_cpu_s_per_it", "plain_steps", "plain_cpu_steps")
PAIRED += ("plain_fetch_s_per_it", "plain_fetch_cpu_s_per_it", "plain_fetch_steps", "plain_fetch_cpu_steps")


def pool(sides: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """One side's result from several measurements of it: the medians over all their timed iterations.

    Args:
        sides: :func:`worker_bundle` (``mode="bundle"``) or :func:`worker_plain` (``"plain"``) results, one per repeat.
        mode: ``"bundle"`` or ``"plain"``.

    Returns:
        the first result, with each per-iteration median recomputed over the concatenated lists of every repeat, the
        peak memory the largest of the repeats, and ``<mode>_repeats`` their number.
    """
    pooled = dict(sides[0])
    for value_key, list_key in POOLED[mode].items():
        if not all(list_key in side for side in sides):  # a result without these figures (a plain side on its own)
            continue
        pooled[list_key] = [t for side in sides for t in side[list_key]]
        pooled[value_key] = statistics.median(pooled[list_key])
    for key in ("peak_rss_mb", "peak_cuda_mb"):
        if all(key in side for side in sides):
            pooled[key] = max(side[key] for side in sides)
    pooled[f"{mode}_repeats"] = len(sides)
    return pooled


def combine(bundle: str, bundle_side: dict[str, Any], plain_side: dict[str, Any]) -> dict[str, Any]:
    """One table row from the two workers' results: each side's peak memory kept apart, and the overheads.

    Args:
        bundle: the bundle's folder name.
        bundle_side: :func:`worker_bundle`'s result.
        plain_side: :func:`worker_plain`'s result.

    Returns:
        both results merged, with ``bundle_memory`` / ``plain_memory`` and ``overhead`` / ``cpu_overhead``
        (bundle seconds per iteration / plain seconds per iteration - 1, wall-clock and CPU).
    """
    memory_keys = ("peak_rss_mb", "peak_cuda_mb")
    row = {"bundle": bundle, **bundle_side, **plain_side}
    row.update({key: bundle_side[key] for key in PAIRED if key in bundle_side})  # the paired plain loop comes first
    row["bundle_memory"] = {k: bundle_side[k] for k in memory_keys if k in bundle_side}
    row["plain_memory"] = {k: plain_side[k] for k in memory_keys if k in plain_side}
    row["overhead"] = row["bundle_s_per_it"] / row["plain_s_per_it"] - 1
    row["cpu_overhead"] = row["bundle_cpu_s_per_it"] / row["plain_cpu_s_per_it"] - 1
    if "bundle_fetch_cpu_s_per_it" in row:  # the runner's own cost: both loops' batch fetches taken out
        runner_cpu = row["bundle_cpu_s_per_it"] - row["bundle_fetch_cpu_s_per_it"]
        plain_cpu = row["plain_cpu_s_per_it"] - row.get("plain_fetch_cpu_s_per_it", 0.0)
        row["cpu_overhead_without_loader"] = runner_cpu / plain_cpu - 1
    return row


def _torch_device(name: str):
    import torch

    return torch.device(name)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _signed_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def _per_repeat(row: dict[str, Any]) -> str:
    each = row.get("cpu_overhead_per_repeat", [])
    return f" ({', '.join(f'{x * 100:+.1f}' for x in each)})" if len(each) > 1 else ""


def markdown(results: list[dict[str, Any]], header: str) -> str:
    """The table of the model cards."""
    cuda = any("peak_cuda_mb" in r for r in results)
    mem = "peak CUDA MB bundle / plain" if cuda else "peak RSS MB bundle / plain"
    lines = [
        header,
        "",
        "| bundle | trainer | plain loop | batch | bundle s/it | plain s/it | overhead | bundle CPU s/it | "
        "plain CPU s/it | CPU overhead | CPU overhead without the loader | loader s/batch | "
        "loader share of bundle it | "
        f"inference s/case (inferer, case) | params M | GFLOPs/sample | {mem} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        key = "peak_cuda_mb" if cuda else "peak_rss_mb"
        lines.append(
            f"| {r['bundle']} | {r['trainer']} | {r['plain_loop']} | {'x'.join(map(str, r['batch_shape']))} | "
            f"{r['bundle_s_per_it']:.3f} | {r['plain_s_per_it']:.3f} | {r['overhead'] * 100:+.1f}% | "
            f"{r['bundle_cpu_s_per_it']:.3f} | {r['plain_cpu_s_per_it']:.3f} | {r['cpu_overhead'] * 100:+.1f}%"
            f"{_per_repeat(r)} | "
            f"{_signed_percent(r.get('cpu_overhead_without_loader'))} | "
            f"{r['loader_s_per_batch']:.3f} | {r['bundle_fetch_s_per_it'] / r['bundle_s_per_it'] * 100:.0f}% | "
            f"{r['infer_s_per_case']:.3f} ({r['inferer']}, {'x'.join(map(str, r['infer_case_shape']))}) | "
            f"{r['params_m']:.2f} | {_fmt(r['gflops_per_sample'], '.2f')} | "
            f"{r['bundle_memory'][key]:.0f} / {r['plain_memory'][key]:.0f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ step subcommand
STEP = "step"  # ``python benchmarks/speed.py step <method> ...``: one method step at the paper's shapes, in memory
HOURS_OF = 6000  # the LA protocol's iterations: UG-MCL and ASE-Net also print the hours of a run at this speed
HOURS_LINE = {
    "ugmcl": f"{HOURS_OF} iterations (the LA protocol) at this speed",
    "asenet": f"{HOURS_OF} iterations at this speed",
}
# a step builder's result: the trainer, lines printed before the run, and the line of figures from the timer after it
StepParts = tuple[Any, list[str], Callable[[IterationTimer], str]]


def parse_step_args(argv: list[str]) -> argparse.Namespace:
    """Options of the ``step`` subcommand: a method, its shapes, and the timing options shared with the others.

    Args:
        argv: the arguments after ``step``.

    Returns:
        the options, ``method`` naming the subcommand's method.
    """
    parser = argparse.ArgumentParser(
        prog="speed.py step",
        description="Seconds per training iteration of one method's engine on random tensors already in memory "
        "(compute only: no loader, no handlers but the schedules the step reads), at the paper's shapes.",
    )
    methods = parser.add_subparsers(dest="method", required=True, metavar="{dfcps,dmgsa,ugmcl,asenet}")
    dfcps = methods.add_parser("dfcps", help="both DeepLabv3+ networks, weak + strong passes, two SGD steps")
    dfcps.add_argument("--size", type=int, default=256, help="image side in pixels (the recipe: 512)")
    dfcps.add_argument("--labeled", type=int, default=8, help="labeled images per iteration (the official run: 8)")
    dfcps.add_argument("--unlabeled", type=int, default=8, help="unlabeled images per iteration (8)")
    add_timing_arguments(dfcps, iterations=1)
    dmgsa = methods.add_parser("dmgsa", help="the components of bundles/dmgsa/configs/train.json [+ quick.json]")
    dmgsa.add_argument("--quick", action="store_true", help="layer configs/quick.json (the CPU-minute setting)")
    dmgsa.add_argument("--mask_ratio", type=float, default=0.35, help="the mask ratio of the timed iterations")
    add_timing_arguments(dmgsa, iterations=3)
    for name, text, sizes in (
        ("ugmcl", "student, noisy teacher and T Monte-Carlo teacher passes, SGD step, EMA update", "3 sizes"),
        ("asenet", "segmenter, teacher and both discriminators, Adam and SGD steps, EMA update", "3 sizes or 2 (2D)"),
    ):
        method = methods.add_parser(name, help=text)
        method.add_argument("--patch", type=int, nargs="+", default=[112, 112, 80], help=f"{sizes} (LA: 112 112 80)")
        method.add_argument("--batch", type=int, default=4, help="cases per iteration (LA: 4)")
        method.add_argument("--labeled", type=int, default=2, help="labeled cases per iteration (LA: 2)")
        add_timing_arguments(method, iterations=2)
    methods.choices["ugmcl"].add_argument("--passes", type=int, default=8, help="Monte-Carlo passes T (8)")
    methods.choices["ugmcl"].add_argument("--features", type=int, default=16, help="V-Net base features (16)")
    methods.choices["asenet"].add_argument("--plain", action="store_true", help="time the plain backbone instead")
    args = parser.parse_args(argv)
    if args.method == "ugmcl" and len(args.patch) != 3:
        parser.error("ugmcl --patch takes 3 sizes")
    if args.method == "asenet" and len(args.patch) not in (2, 3):
        parser.error("asenet --patch takes 3 sizes (3D) or 2 (2D)")
    return args


def _semi_supervised_loader(
    labeled: list[dict], unlabeled: list[dict], n_labeled: int, n_unlabeled: int, total: int, **kwargs
):
    """``LabeledUnlabeledLoader`` of ``total`` batches, ``n_labeled`` + ``n_unlabeled`` cases from the two lists."""
    from monai.data import DataLoader, Dataset

    from common.data import LabeledUnlabeledLoader

    return LabeledUnlabeledLoader(
        DataLoader(Dataset(labeled * n_labeled), batch_size=n_labeled, drop_last=True),
        DataLoader(Dataset(unlabeled * n_unlabeled), batch_size=n_unlabeled, drop_last=True),
        epoch_length=total,
        **kwargs,
    )


def _random_mean_teacher_loader(args: argparse.Namespace, channels: int, distinct: int):
    """Batches of ``args.batch`` cases of ``args.patch``, ``args.labeled`` of them labeled (sparse random labels).

    The cases cycle through ``distinct`` random labeled and ``distinct`` random unlabeled ones (drawn in that order).
    """
    import torch

    size = tuple(args.patch)
    labeled = [
        {"image": torch.randn(channels, *size), "label": (torch.rand(1, *size) > 0.9).float()} for _ in range(distinct)
    ]
    unlabeled = [{"image": torch.randn(channels, *size)} for _ in range(distinct)]
    n_u = args.batch - args.labeled
    return _semi_supervised_loader(labeled, unlabeled, args.labeled, n_u, args.warmup + args.iterations)


def _parameters(network) -> int:
    return sum(p.numel() for p in network.parameters())


def step_dfcps(args: argparse.Namespace, device) -> StepParts:
    """``DFCPSTrainer``: both DeepLabv3+ ResNet-50 networks' weak and strong passes, one backward, two SGD steps."""
    import torch

    from common.engines import DFCPSTrainer
    from common.networks import DeepLabV3Plus

    size = (args.size, args.size)

    def case(labeled: bool) -> dict:
        image = torch.randn(3, *size)
        item = {"image": image, "image_strong": image + 0.1 * torch.randn(3, *size)}
        if labeled:
            item["label"] = (torch.rand(1, *size) > 0.8).float()
        return item

    total = args.warmup + args.iterations
    loader = _semi_supervised_loader(
        [case(True)], [case(False)], args.labeled, args.unlabeled, total, extra_keys="image_strong"
    )
    network_a, network_b = DeepLabV3Plus().to(device), DeepLabV3Plus().to(device)
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
    before = [
        f"DeepLabv3+ (ResNet-50, output stride 16, ASPP 6/12/18, 2 classes): {_parameters(network_a):,} parameters "
        "per network"
    ]

    def after(timer: IterationTimer) -> str:
        return (
            f"DFCPS iteration, {args.size}x{args.size}, {args.labeled} labeled + {args.unlabeled} unlabeled images, "
            f"two networks x (weak + strong) passes: {timer.summary(args.warmup)} [{describe_machine(device)}]"
        )

    return trainer, before, after


def step_dmgsa(args: argparse.Namespace, device) -> StepParts:
    """``DMGSATrainer`` built from the bundle's own config: masking, MONR targets, network, discriminators' steps."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    from common.engines import DMGSATrainer

    configs = ROOT / "bundles" / "dmgsa" / "configs"
    config = ConfigParser()
    config.read_config(config_files("dmgsa", ["train", "quick"] if args.quick else ["train"]))
    config["bundle_root"] = str(configs.parent)
    config["device"] = f"$torch.device('{device}')"
    size, batch = tuple(config["patch_size"]), config["batch_size"]
    label = torch.zeros(batch, 1, *size)
    label[:, :, size[0] // 2 - 3 : size[0] // 2 + 3, size[1] // 2 - 3 : size[1] // 2 + 3, :] = 1.0  # a tube
    data = [{"image": torch.rand(batch, 1, *size), "label": label}] * (args.warmup + args.iterations)
    trainer = DMGSATrainer(
        device=device,
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
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: setattr(e.state, "mask_ratio", args.mask_ratio))
    parameters = _parameters(config.get_parsed_content("network_def"))
    where = "train.json + quick.json" if args.quick else "train.json"

    def after(timer: IterationTimer) -> str:
        timed = timer.timed(args.warmup)
        return (
            f"DMGSA step ({where}; batch {batch} x {'x'.join(map(str, size))}; network {parameters / 1e6:.2f} M "
            f"parameters; {device}, {torch.get_num_threads()} threads): median {statistics.median(timed):.2f} s "
            f"per iteration over {len(timed)} ({', '.join(f'{t:.2f}' for t in timed)})"
        )

    return trainer, [], after


def step_ugmcl(args: argparse.Namespace, device) -> StepParts:
    """``UGMCLTrainer``: student pass, noisy teacher pass, T Monte-Carlo teacher passes, SGD step, EMA update."""
    import torch

    from common.engines import UGMCLTrainer
    from common.handlers import EMATeacher, RampScheduler
    from common.inferers import MCUncertaintyEstimator
    from common.networks import DualTaskVNet

    loader = _random_mean_teacher_loader(args, channels=1, distinct=2)
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

    def after(timer: IterationTimer) -> str:
        return (
            f"UG-MCL iteration, patch {'x'.join(map(str, args.patch))}, batch {args.batch} = {args.labeled} labeled + "
            f"{args.batch - args.labeled} unlabeled, T = {args.passes}, V-Net features {args.features}: "
            f"{timer.summary(args.warmup)} [{describe_machine(device)}]"
        )

    return trainer, [], after


def step_asenet(args: argparse.Namespace, device) -> StepParts:
    """``ASENetTrainer``: student and teacher passes, the losses, the Adam step, both discriminators, the EMA update."""
    import torch
    from monai.losses import DiceCELoss

    from common.engines import ASENetTrainer, DiscriminatorSpec, d1_inputs, d2_inputs
    from common.handlers import DyBACTemperature, EMATeacher, RampScheduler
    from common.losses import TwoClassAdversarialLoss
    from common.networks import ASENetDiscriminator, DyBACUNet, DyBACVNet

    dims = len(args.patch)
    channels = 1 if dims == 3 else 3
    loader = _random_mean_teacher_loader(args, channels, distinct=1)
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

    def after(timer: IterationTimer) -> str:
        return (
            f"ASE-Net iteration ({'plain' if args.plain else 'DyBAC'} segmenter), "
            f"patch {'x'.join(map(str, args.patch))}, batch {args.batch} = {args.labeled} labeled + "
            f"{args.batch - args.labeled} unlabeled: {timer.summary(args.warmup)} [{describe_machine(device)}]"
        )

    return trainer, [], after


STEP_BUILDERS = {"dfcps": step_dfcps, "dmgsa": step_dmgsa, "ugmcl": step_ugmcl, "asenet": step_asenet}


def step_main(argv: list[str]) -> int:
    """``speed.py step <method>``: build the method's trainer, time its iterations, print the figures.

    The trainer runs one epoch of ``warmup + iterations`` iterations under :class:`timing.IterationTimer` (CUDA
    synchronised, each iteration printed as it ends); the figures of the method follow.

    Args:
        argv: the arguments after ``step``.

    Returns:
        0.
    """
    import torch

    args = parse_step_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    trainer, before, after = STEP_BUILDERS[args.method](args, device)
    timer = IterationTimer(device, digits=1 if args.method == "dfcps" else 2)
    timer.attach(trainer)
    for line in before:
        print(line)
    trainer.run()
    print(after(timer))
    if args.method in HOURS_LINE:
        print(f"{HOURS_LINE[args.method]}: {HOURS_OF * statistics.mean(timer.timed(args.warmup)) / 3600:.1f} h")
    return 0


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    if given[:1] == [STEP]:  # the step subcommand has its own options
        return step_main(given[1:])
    args = parse_args(argv)
    if args.amp == "on" and not args.device.startswith("cuda"):
        raise SystemExit("--amp on needs a CUDA device (--device cuda)")
    if args.worker:
        worker = worker_bundle if args.worker == "bundle" else worker_plain
        with contextlib.redirect_stdout(sys.stderr):  # the bundle's prints must not mix with the JSON line
            result = worker(args, args.bundles[0])
        print(json.dumps(result))
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        saved = json.loads((args.output / "speed.json").read_text())
        table = markdown(saved["results"], saved["header"])
        (args.output / "speed.md").write_text(table + "\n")
        print(table)
        return 0
    bundles = args.bundles if args.bundles else bundles_with("quick")
    load_before = load_average()
    results, failed = [], []
    for bundle in bundles:
        sides: dict[str, list[dict[str, Any]]] = {"bundle": [], "plain": []}
        try:
            for repeat in range(args.repeats):
                # ABBA order: a load that drifts during the run weighs on both sides alike
                for mode in ("bundle", "plain") if repeat % 2 == 0 else ("plain", "bundle"):
                    sides[mode].append(measure(args, bundle, mode))
        except RuntimeError as error:  # reported; the other bundles are still measured
            print(error, flush=True)
            failed.append(bundle)
            continue
        row = combine(bundle, pool(sides["bundle"], "bundle"), pool(sides["plain"], "plain"))
        row["cpu_overhead_per_repeat"] = [
            b["bundle_cpu_s_per_it"] / b["plain_cpu_s_per_it"] - 1 for b in sides["bundle"]
        ]
        results.append(row)
        each = ", ".join(f"{x * 100:+.1f}%" for x in row["cpu_overhead_per_repeat"])
        print(
            f"{bundle}: bundle {row['bundle_s_per_it']:.3f} s/it, plain {row['plain_s_per_it']:.3f} s/it "
            f"({row['overhead'] * 100:+.1f}%); CPU s/it {row['bundle_cpu_s_per_it']:.3f} vs "
            f"{row['plain_cpu_s_per_it']:.3f} ({row['cpu_overhead'] * 100:+.1f}%"
            + (f"; per repeat {each}" if args.repeats > 1 else "")
            + f"), load {load_average()}",
            flush=True,
        )
    options = f"--device {args.device} --amp {args.amp}" + (" --channels_last" if args.channels_last else "")
    options += "".join(f" --override {item}" for item in args.override)
    header = (
        f"{describe_machine(_torch_device(args.device))}; schedule {args.schedule}; {options}; "
        f"median of {args.repeats} x {args.iterations} iterations (each after {args.warmup} warm-up; the plain step "
        f"paired in the bundle's process{', bundle and plain processes alternating' if args.repeats > 1 else ''}); "
        f"load {load_before} before, {load_average()} after; "
        f"command: {display_command('benchmarks/speed.py', sys.argv[1:] if argv is None else argv)}"
    )
    if failed:
        header += f"; failed (see the output above): {', '.join(failed)}"
    table = markdown(results, header)
    (args.output / "speed.json").write_text(json.dumps({"header": header, "results": results}, indent=2) + "\n")
    (args.output / "speed.md").write_text(table + "\n")
    print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
