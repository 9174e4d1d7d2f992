"""GPU evidence in one call: speed, memory, inference latency, recipe projections, short trainings and DDP.

Time on a lent GPU machine is short (about a quarter of an hour, start-up included), so every figure the model cards
owe to a GPU comes from this one command, within a total-time budget, into one folder::

    python benchmarks/gpu_check.py --output <folder>                 # on the GPU machine (--device cuda)
    python benchmarks/gpu_check.py --device cpu --output <folder>     # the same steps at quick.json shapes, on CPU

Steps, in this order (the order puts the figures the model cards need most first, so that a budget that runs out
loses the least useful ones):

1. ``environment``: the GPU's name, memory and driver (``nvidia-smi``), ``torch.cuda.get_device_name``,
   ``torch.version.cuda``, cuDNN, torch / MONAI / Ignite / Python versions.
2. ``speed_amp_on/<bundle>`` for each bundle: seconds per training iteration through the bundle runner and through
   the plain loop, peak ``torch.cuda.max_memory_allocated`` of each, inference latency per validation case (the
   validation inferer of ``train.json``, the same as ``inference.json``'s default: sliding window in 3D), parameters
   and FLOPs. These are ``benchmarks/speed.py``'s two workers (``speed.measure``), at the paper's shapes
   (``train.json`` without ``quick.json``, the demo phantom), AMP on.
3. ``train_2d`` and ``train_3d``: a short real training (300 and 200 iterations on the GPU) of CMUNeXt and UG-MCL
   (else the first selected 2D / 3D bundle) through the bundle runner (``monai.bundle.ConfigWorkflow`` on the
   bundle's configs with overrides), AMP on: the loss per iteration (does it fall), the validation metrics, the
   device every validation forward ran on (a forward pre-hook on the evaluator's network) and the trainer's and
   evaluator's ``amp``.
4. ``torchrun``: ``torchrun --standalone --nproc_per_node=1 -m monai.bundle run`` with ``multi_gpu_train.json`` for
   one bundle (NCCL on a GPU, gloo on CPU; ``NCCL_DEBUG=INFO`` lines in the log show NCCL at work).
5. ``speed_amp_off/<bundle>``: step 2 with AMP off.
6. ``speed_channels_last/<bundle>``: step 2 with channels-last memory format, for the 2D networks (AMP on).

Then ``projection``: the wall time of each paper recipe, from the AMP-on speed figures (AMP is the recipes' default
on CUDA) and the recipe's iteration and validation counts on the paper's data set (``train.json``'s own schedule and
split fractions, applied to the data set's case count with the collection's splitter).

Budget (``--budget_s``): before each step the remaining time is compared with the step's estimate (the time the same
bundle's earlier speed step took, else a default); a step that does not fit is skipped with the reason; a running
step is killed at the end of the budget (subprocess timeout, its process group on POSIX). ``gpu_check.json`` and
``gpu_check.md`` are rewritten after every step, so a kill of the whole script loses nothing already measured.

``--device cpu`` runs the same steps at tiny shapes (``quick.json`` layered, one timed iteration, training runs of a
few iterations); AMP-on steps are skipped there (``speed.py`` refuses AMP without CUDA), channels-last runs AMP off.

Files in ``--output`` (at most six, as the device tool brings back eight): ``gpu_check.json`` (every step: status,
reason, seconds, figures), ``gpu_check.md`` (the tables the README and model cards are filled from), ``gpu_check.log``
(the tail of every step's output), ``train_2d_curves.png`` / ``train_3d_curves.png`` (the bundles' training curves).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    bundles_with,
    config_files,
    display_command,
    display_path,
    load_average,
    monai_bundle_command,
    phantom_folder,
    short_run_overrides,
)

__all__ = [
    "PAPER_DATA",
    "Budget",
    "recipe_counts",
    "projected_seconds",
    "run_command",
    "main",
]

DEFAULT_BUDGET_S = 420.0  # well inside the 8 minutes one device call should take, start-up and wheel install aside
RESERVE_S = 5.0  # kept back at every step for writing the results
LOG_TAIL = 4000  # characters of each step's output kept in gpu_check.log

# The paper's data set of each bundle's default protocol, as the bundle's layout reads it: cases in the pool that
# train.json's fractions split, and cases the data set itself holds out as its official test split. The recipe's
# iteration count depends on it only through the training cases per epoch (CMUNeXt, DMGSA, DFCPS); UG-MCL and ASE-Net
# count iterations. Sources: the model cards (bundles/<name>/docs/README.md).
PAPER_DATA: dict[str, dict[str, Any]] = {
    "cmunext": {"data_set": "Kvasir-SEG", "cases": 1000, "official_test": 0},
    "dfcps": {"data_set": "Kvasir-SEG", "cases": 1000, "official_test": 0},
    # ATM'22 imagesTr: 300 labeled CTs, ATM_164_0000 withdrawn by the organisers
    "dmgsa": {"data_set": "ATM'22 training set", "cases": 299, "official_test": 0},
    # the semi-supervised LA benchmark: 80 training volumes and the 20 of test.list
    "ugmcl": {"data_set": "LA 2018", "cases": 80, "official_test": 20},
    # ASE-Net's LiTS lists: 121 training volumes and 10 test volumes
    "asenet": {"data_set": "LiTS", "cases": 121, "official_test": 10},
}

# Paper shapes, smaller phantoms: writing 100 (UG-MCL) or 131 (ASE-Net) phantom volumes and caching them would take a
# large share of the budget, while the speed of an iteration depends on the patch and batch, not on the case count.
# The labeled count shrinks with the phantom so that the split stays possible; it changes no tensor shape.
PAPER_PHANTOM_OVERRIDES: dict[str, dict[str, Any]] = {
    "ugmcl": {"phantom#num_cases": 20, "labeled_count": 8},
    "asenet": {"phantom#num_cases": 20, "labeled_count": 8},
}

# The short trainings: (epochs, iterations per epoch, validate every n epochs) on the GPU and on CPU, per spatial
# dimensions: 300 2D and 200 3D iterations on the GPU (a 3D iteration costs several 2D ones).
TRAIN_SCHEDULE = {("cuda", 2): (6, 50, 2), ("cuda", 3): (4, 50, 2), ("cpu", 2): (2, 1, 1), ("cpu", 3): (2, 1, 1)}
TORCHRUN_SCHEDULE = {"cuda": (2, 10), "cpu": (1, 2)}  # (epochs, iterations per epoch)

# the bundles of the short trainings when selected (else the first selected of their dimensions): CMUNeXt, the
# lightest 2D one, and UG-MCL, whose 6000-iteration LA recipe is the semi-supervised benchmark's reference
TRAIN_PREFERENCE = {2: "cmunext", 3: "ugmcl"}

# step estimates in seconds when nothing measured is known yet (the time a step needs before it is started)
DEFAULT_ESTIMATE = {
    "cuda": {"speed": 35.0, "train": 90.0, "torchrun": 45.0},
    "cpu": {"speed": 20.0, "train": 30.0, "torchrun": 30.0},
}


# ------------------------------------------------------------------------------------------------ pure helpers
class Budget:
    """Seconds left of a total budget, counted from construction.

    Args:
        total_s: the budget in seconds.
        clock: a monotonic clock (seconds); ``time.monotonic`` unless a test gives one.
    """

    def __init__(self, total_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.total_s = float(total_s)
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        """Seconds left, minus the reserve for writing the results (never below 0)."""
        return max(0.0, self.total_s - self.elapsed() - RESERVE_S)

    def fits(self, estimate_s: float) -> bool:
        return self.left() >= estimate_s


def run_command(cmd: Sequence[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command from the repository root in its own process group, output to ``log``, killed at ``timeout``.

    The process group matters for ``torchrun`` and data-loader workers: killing only the direct child would leave its
    children running on the GPU past the budget.

    Args:
        cmd: the argument vector.
        log: receives stdout and stderr.
        timeout: seconds before the whole process group is killed.
        env: the child's environment (default: this process's).

    Returns:
        ``{"returncode", "wall_s", "cpu_s", "timed_out"}``; ``cpu_s`` is the children's user + system CPU seconds
        (POSIX ``os.times``), ``returncode`` None when timed out.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    before = os.times()
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n\n")
        out.flush()
        proc = subprocess.Popen(
            list(cmd), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        timed_out = False
        try:
            proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
        except BaseException:  # Ctrl-C: the child is in its own session and would not get the signal
            _kill_group(proc)
            raise
        if timed_out:
            _kill_group(proc)
    after = os.times()
    return {
        "returncode": None if timed_out else proc.returncode,
        "wall_s": time.perf_counter() - start,
        "cpu_s": (after.children_user - before.children_user) + (after.children_system - before.children_system),
        "timed_out": timed_out,
    }


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _fake_cases(count: int, official_test: int) -> list[dict[str, Any]]:
    """Case records for the splitter: only ids and the official split matter to the counts."""
    cases = [{"id": f"case_{i:04d}", "image": "-", "label": "-"} for i in range(count)]
    cases += [
        {"id": f"test_{i:04d}", "image": "-", "label": "-", "official_split": "test"} for i in range(official_test)
    ]
    return cases


def recipe_counts(bundle: str, cases: int | None = None, official_test: int | None = None) -> dict[str, Any]:
    """The paper recipe's training iterations and validation work for a bundle on its paper data set.

    ``train.json`` is parsed with MONAI's ``ConfigParser``; in its ``datalist`` expression the call of
    ``common.data.prepare_datalist`` is replaced by the collection's splitter (``common.data.datalist.split_cases``)
    on ``cases`` record stubs, called with the split arguments that expression passes (fractions, labeled count or
    fraction, seed), so that schedule expressions reading the datalist (DFCPS's ``epoch_length``) and the validation
    list (``validate#dataset#data``) evaluate on the paper's counts without touching any file.

    Iterations: ``epochs * epoch_length`` when ``train.json`` sets ``epoch_length`` (UG-MCL and ASE-Net: 30 x 200 =
    6000; DFCPS: ``max(labeled, unlabeled) // labeled_batch_size`` per epoch), otherwise ``epochs`` times the training
    loader's length, ``ceil(training cases / batch_size)`` (those loaders keep the last, smaller batch). Validations:
    ``epochs // val_interval`` runs over the validation list.

    Args:
        bundle: the bundle's folder name.
        cases: cases in the split pool (default ``PAPER_DATA``).
        official_test: cases the data set holds out as its test split (default ``PAPER_DATA``).

    Returns:
        ``{"data_set", "cases", "training", "unlabeled", "validation", "epochs", "iterations_per_epoch",
        "iterations", "validations"}``.
    """
    import inspect

    from monai.bundle import ConfigParser

    from common.data.datalist import split_cases

    data = PAPER_DATA.get(bundle, {"data_set": "?", "cases": None, "official_test": 0})
    cases = data["cases"] if cases is None else cases
    official_test = data["official_test"] if official_test is None else official_test
    accepted = set(inspect.signature(split_cases).parameters) - {"cases"}

    def split_like_prepare(**kwargs: Any) -> dict[str, list[dict[str, Any]]]:
        split_args = {key: value for key, value in kwargs.items() if key in accepted}
        return split_cases(_fake_cases(cases, official_test), **split_args)

    parser = ConfigParser(globals={"_split_like_prepare": split_like_prepare})
    parser.read_config(config_files(bundle, ["train"]))
    expression = parser["datalist"]
    if not isinstance(expression, str) or "prepare_datalist(" not in expression:
        raise ValueError(f"{bundle}: train.json's datalist is not a prepare_datalist call: {expression!r}")
    parser["datalist"] = "$_split_like_prepare(" + expression.split("prepare_datalist(", 1)[1]
    parser.get_parsed_content("imports")  # the `$import` lines, for expressions such as math.ceil
    split = parser.get_parsed_content("datalist")
    epochs = int(parser.get_parsed_content("epochs"))
    if "epoch_length" in parser.config:
        per_epoch = int(parser.get_parsed_content("epoch_length"))
    else:
        per_epoch = math.ceil(len(split["training"]) / int(parser.get_parsed_content("batch_size")))
    return {
        "data_set": data["data_set"],
        "cases": cases + official_test,
        "training": len(split["training"]),
        "unlabeled": len(split["unlabeled"]),
        "validation": len(parser.get_parsed_content("validate#dataset#data")),
        "epochs": epochs,
        "iterations_per_epoch": per_epoch,
        "iterations": epochs * per_epoch,
        "validations": epochs // int(parser.get_parsed_content("val_interval")),
    }


def projected_seconds(counts: dict[str, Any], s_per_iteration: float, s_per_case: float) -> dict[str, float]:
    """Wall time of a recipe: its iterations at ``s_per_iteration`` plus every validation case at ``s_per_case``.

    Args:
        counts: :func:`recipe_counts`'s result.
        s_per_iteration: seconds per training iteration.
        s_per_case: seconds of inference per validation case.

    Returns:
        ``{"train_s", "validation_s", "total_s"}``.
    """
    train_s = counts["iterations"] * s_per_iteration
    validation_s = counts["validations"] * counts["validation"] * s_per_case
    return {"train_s": train_s, "validation_s": validation_s, "total_s": train_s + validation_s}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _spatial_dims(bundle: str) -> int:
    """2 when ``train.json`` sets a 2-value ``image_size``, 3 otherwise (a 3-value ``patch_size``)."""
    config = json.loads((ROOT / "bundles" / bundle / "configs" / "train.json").read_text())
    size = config.get("image_size", config.get("patch_size", []))
    return len(size) if isinstance(size, list) else 3


def _top_level_keys(bundle: str, names: Sequence[str]) -> set[str]:
    """The top-level ids that a bundle's layered configs define."""
    return {key for path in config_files(bundle, names) for key in json.loads(Path(path).read_text())}


def _batch_shape(batch: Any) -> list[int] | None:
    """The image shape of a collated batch (a dict) or of a decollated one (a list of dicts: its length first)."""
    if isinstance(batch, dict) and hasattr(batch.get("image"), "shape"):
        return list(batch["image"].shape)
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], dict) and "image" in batch[0]:
        return [len(batch), *batch[0]["image"].shape]
    return None


def _error_summary(log: Path) -> str:
    """The lines of a failed command's log that say why: the first ``...Error: ...`` line and the two after it."""
    lines = _tail(log, 20000).splitlines()
    for i, line in enumerate(lines):
        if "Error:" in line and "torch/distributed" not in line and "ChildFailedError" not in line:
            return " ".join(part.strip() for part in lines[i : i + 3])[:1500]
    return " ".join(lines[-5:])[:1500]


def _tail(path: Path, chars: int = LOG_TAIL) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------------ worker side
def worker_train(bundle: str, names: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """Train a bundle through ``ConfigWorkflow`` and record losses, validation metrics and validation devices."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    from common.handlers.curves import scalar_outputs

    workflow = ConfigWorkflow(
        config_file=config_files(bundle, names), workflow_type="train", logging_file=False, **overrides
    )
    workflow.initialize()
    parser = workflow.parser
    trainer = parser.get_parsed_content("train#trainer")
    evaluator = parser.get_parsed_content("validate#evaluator")
    losses: list[float] = []
    validations: list[dict[str, Any]] = []
    state = {"validating": False, "devices": set()}

    def _loss(engine) -> None:
        loss = scalar_outputs(engine.state.output).get("loss")
        if loss is not None:
            losses.append(loss)

    def _pre_hook(module, inputs) -> None:
        if state["validating"]:
            tensor = next((x for x in inputs if isinstance(x, torch.Tensor)), None)
            if tensor is not None:
                state["devices"].add(str(tensor.device))

    def _validation_started(engine) -> None:
        state["validating"] = True

    def _validation_done(engine) -> None:
        state["validating"] = False
        metrics = {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, int | float)}
        validations.append({"epoch": trainer.state.epoch, **metrics})

    trainer.add_event_handler(Events.ITERATION_COMPLETED, _loss)
    evaluator.add_event_handler(Events.STARTED, _validation_started)
    evaluator.add_event_handler(Events.COMPLETED, _validation_done)
    evaluator.network.register_forward_pre_hook(_pre_hook)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    workflow.run()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    workflow.finalize()
    if not losses:
        raise RuntimeError(f"{type(trainer).__name__}'s output holds no 'loss' to follow")
    tenth = max(1, len(losses) // 10)
    first, last = statistics.mean(losses[:tenth]), statistics.mean(losses[-tenth:])
    result = {
        "configs": names,
        "trainer": type(trainer).__name__,
        "iterations": trainer.state.iteration,
        "epochs": trainer.state.epoch,
        "batch_shape": _batch_shape(trainer.state.batch),
        "loss_first_tenth": first,
        "loss_last_tenth": last,
        "loss_fell": last < first,
        "loss_samples": [losses[i] for i in range(0, len(losses), max(1, len(losses) // 20))],
        "validations": validations,
        "validation_devices": sorted(state["devices"]),
        "trainer_amp": bool(getattr(trainer, "amp", False)),
        "evaluator_amp": bool(getattr(evaluator, "amp", False)),
        "run_wall_s": wall,
        "run_cpu_s": cpu,
        "s_per_iteration": wall / max(1, trainer.state.iteration),
    }
    if torch.cuda.is_available():
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# ------------------------------------------------------------------------------------------------ driver side
class Check:
    """The run's state: options, budget, steps done so far, and the writing of the results files."""

    def __init__(self, args: argparse.Namespace, argv: Sequence[str]) -> None:
        self.args = args
        self.argv = list(argv)
        self.cuda = args.device.startswith("cuda")
        self.kind = "cuda" if self.cuda else "cpu"
        self.budget = Budget(args.budget_s)
        self.steps: list[dict[str, Any]] = []
        self.output: Path = args.output
        self.work: Path = args.work_dir
        self.log = self.output / "gpu_check.log"
        # `common` from this checkout, for every child (on the GPU machine nothing is pip-installed)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.bundles = args.bundles or bundles_with("quick")
        self.estimates: dict[str, float] = {}
        self.started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.output.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")

    # -- step bookkeeping
    def step(
        self,
        name: str,
        kind: str,
        body: Callable[[float], dict[str, Any]],
        bundle: str | None = None,
        not_applicable: str | None = None,
    ) -> dict[str, Any]:
        """Run ``body(seconds_left)`` as step ``name`` when it applies and fits the budget; record it; rewrite results.

        Args:
            name: the step's name in the results (``speed_amp_on/cmunext``).
            kind: ``environment``, ``speed``, ``train``, ``torchrun`` or ``projection`` (``--steps`` selects kinds).
            body: does the work within the seconds given; returns the step's figures.
            bundle: the step's bundle: its latest speed step's duration is the estimate of its next one.
            not_applicable: when given, the step is skipped with this reason.

        Returns:
            the step's record: ``status`` (done, skipped, failed, timed out), ``reason``, ``seconds``, figures.
        """
        always = kind in ("environment", "projection")  # cheap, and the report needs them
        estimate = 0.0 if always else DEFAULT_ESTIMATE[self.kind][kind]
        if kind == "speed":
            estimate = self.estimates.get(bundle or "", estimate)
        record: dict[str, Any] = {"step": name, "kind": kind}
        if not_applicable is not None:
            record.update(status="skipped", reason=not_applicable)
        elif not always and self.args.steps and kind not in self.args.steps and name not in self.args.steps:
            record.update(status="skipped", reason=f"not selected (--steps {' '.join(self.args.steps)})")
        elif not self.budget.fits(estimate):
            record.update(
                status="skipped",
                reason=f"budget: {self.budget.left():.0f} s left, the step needs about {estimate:.0f} s",
            )
        else:
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            try:
                figures = body(self.budget.left())
            except subprocess.TimeoutExpired:
                record.update(status="timed out", reason=f"killed at the end of the budget ({self.args.budget_s} s)")
            except Exception as error:  # reported; the other steps still run
                record.update(status="failed", reason=f"{type(error).__name__}: {str(error)[-1500:]}")
            else:
                record.update(status="done", **figures)
            record["seconds"] = time.perf_counter() - start
            record["cpu_seconds"] = _cpu_seconds() - cpu_start  # this process and the children it waited for
            if kind == "speed" and record["status"] == "done":
                self.estimates[bundle or ""] = record["seconds"]
        record["load"] = load_average()
        self.steps.append(record)
        self.write()
        reason = f": {record['reason']}" if "reason" in record else ""
        print(f"[{self.budget.elapsed():6.1f} s] {name}: {record['status']}{reason}", flush=True)
        return record

    def append_log(self, title: str, path: Path) -> None:
        with open(self.log, "a") as out:
            out.write(f"\n===== {title} ({display_path(path)})\n{_tail(path)}\n")

    # -- the steps
    def environment(self, _: float) -> dict[str, Any]:
        import torch

        found: dict[str, Any] = {
            "device": self.args.device,
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        }
        for package in ("monai", "ignite", "nibabel"):
            with contextlib.suppress(ImportError):
                found[package] = __import__(package).__version__
        if self.cuda:
            if not torch.cuda.is_available():
                raise RuntimeError("--device cuda, but torch.cuda.is_available() is False")
            device = torch.device(self.args.device)
            found["gpu"] = torch.cuda.get_device_name(device)
            found["gpu_memory_gb"] = torch.cuda.get_device_properties(device).total_memory / 1e9
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                smi = subprocess.run(
                    ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                found["nvidia_smi"] = smi.stdout.strip()
                found["driver"] = smi.stdout.strip().split(",")[1].strip() if "," in smi.stdout else None
        else:
            found["gpu"] = None
            found["torch_threads"] = torch.get_num_threads()
        return found

    def _speed_args(self, amp: str, channels_last: bool, bundle: str):
        import speed

        # one measurement per side (speed_step calls the two workers once each), as the displayed command says
        options = ["--device", self.args.device, "--amp", amp, "--output", str(self.work), "--repeats", "1"]
        if self.cuda:
            options += ["--schedule", "paper", "--iterations", str(self.args.iterations), "--warmup", "3"]
        else:
            options += ["--schedule", "quick", "--iterations", "1", "--warmup", "1"]
        options += ["--channels_last"] if channels_last else []
        overrides = self._shape_overrides(bundle)
        # every iteration timed is one of the epoch, also for trainers whose epoch is the loader's length
        overrides["train#trainer#epoch_length"] = int(options[options.index("--iterations") + 1]) + int(
            options[options.index("--warmup") + 1]
        )
        if self.cuda:  # the recipe's loader workers: on the GPU the loader must keep up as it does in the recipe
            overrides["num_workers"] = json.loads(
                (ROOT / "bundles" / bundle / "configs" / "train.json").read_text()
            ).get("num_workers", 0)
        options += [f"--override={key}={json.dumps(value)}" for key, value in overrides.items()]
        return speed, speed.parse_args(options)

    def _shape_overrides(self, bundle: str) -> dict[str, Any]:
        return dict(PAPER_PHANTOM_OVERRIDES.get(bundle, {})) if self.cuda else {}

    def speed_step(self, bundle: str, amp: str, channels_last: bool) -> Callable[[float], dict[str, Any]]:
        def body(_: float) -> dict[str, Any]:
            speed, args = self._speed_args(amp, channels_last, bundle)
            sides = {}
            for mode in ("bundle", "plain"):
                try:
                    sides[mode] = speed.measure(args, bundle, mode, timeout=self.budget.left())
                except RuntimeError as error:  # keep the worker's output for the log
                    (self.work / "speed_error.log").write_text(str(error))
                    self.append_log(f"speed {bundle} {mode} (failed)", self.work / "speed_error.log")
                    raise
            row = speed.combine(bundle, sides["bundle"], sides["plain"])
            row["options"] = display_command("benchmarks/speed.py", args_to_argv(args))
            return {"row": row}

        return body

    def _train_overrides(
        self, bundle: str, name: str, names: list[str], epochs: int, per_epoch: int, val_every: int | None
    ) -> dict[str, Any]:
        """The overrides of a short training: its folders, device, AMP and schedule, limited to the configs' keys.

        Keys the layered configs do not define are left out (the bundle command line refuses them): ``epoch_length``
        and ``max_iterations`` exist in the iteration-counting bundles only, ``train#trainer#epoch_length`` sets the
        epoch of the others.
        """
        folder = self.work / name
        schedule = "paper" if self.cuda else "quick"
        # the phantom the speed steps wrote (same generator settings), else it is written now
        phantom = phantom_folder(self.work, bundle, schedule)
        overrides: dict[str, Any] = {
            **short_run_overrides(bundle, folder, phantom, self.args.device, self.cuda, epochs, per_epoch),
            "train#trainer#epoch_length": per_epoch,
            **self._shape_overrides(bundle),
        }
        if val_every is not None:
            overrides["val_interval"] = val_every
        if not self.cuda:
            overrides["num_workers"] = 0
        defined = _top_level_keys(bundle, names)
        return {key: value for key, value in overrides.items() if key.split("#", 1)[0] in defined}

    def train_step(self, bundle: str, name: str) -> Callable[[float], dict[str, Any]]:
        def body(timeout: float) -> dict[str, Any]:
            epochs, per_epoch, val_every = TRAIN_SCHEDULE[self.kind, _spatial_dims(bundle)]
            names = ["train"] if self.cuda else ["train", "quick"]
            overrides = self._train_overrides(bundle, name, names, epochs, per_epoch, val_every)
            result_file = self.work / name / "result.json"
            result_file.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "train", "--bundles", bundle]
            cmd += ["--configs", *names, "--worker_overrides", json.dumps(overrides), "--result_file", str(result_file)]
            log = self.work / name / "train.log"
            ran = run_command(cmd, log, timeout, self.env)
            self.append_log(f"{name} {bundle}", log)
            if ran["timed_out"]:
                raise subprocess.TimeoutExpired(cmd, timeout)
            if ran["returncode"] != 0:
                raise RuntimeError(f"exit {ran['returncode']}: {_error_summary(log)}")
            figures = json.loads(result_file.read_text())
            curves = self.work / name / "eval" / "training_curves.png"
            if curves.is_file():
                shutil.copy(curves, self.output / f"{name}_curves.png")
                figures["curves"] = f"{name}_curves.png"
            if self.cuda and not all(d.startswith("cuda") for d in figures["validation_devices"] or ["none"]):
                raise RuntimeError(f"validation ran on {figures['validation_devices']}, not on the GPU")
            shown = {key: value for key, value in overrides.items() if key not in ("bundle_root", "device")}
            return {
                "bundle": bundle,
                "process_wall_s": ran["wall_s"],
                "process_cpu_s": ran["cpu_s"],
                "overrides": {
                    k: display_path(v) if isinstance(v, str) and os.path.isabs(v) else v for k, v in shown.items()
                },
                **figures,
            }

        return body

    def torchrun_step(self, bundle: str) -> Callable[[float], dict[str, Any]]:
        def body(timeout: float) -> dict[str, Any]:
            epochs, per_epoch = TORCHRUN_SCHEDULE[self.kind]
            names = ["train", "multi_gpu_train"] if self.cuda else ["train", "quick", "multi_gpu_train"]
            overrides = self._train_overrides(bundle, "torchrun", names, epochs, per_epoch, 1)
            overrides.pop("device")  # multi_gpu_train.json's local_device(): cuda:<LOCAL_RANK>, else CPU
            user_form = monai_bundle_command(None, config_files(bundle, names), overrides)
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", *user_form[1:]]
            env = dict(self.env, NCCL_DEBUG="INFO") if self.cuda else self.env
            log = self.work / "torchrun" / "torchrun.log"
            ran = run_command(cmd, log, timeout, env)
            self.append_log(f"torchrun {bundle}", log)
            if ran["timed_out"]:
                raise subprocess.TimeoutExpired(cmd, timeout)
            if ran["returncode"] != 0:
                raise RuntimeError(f"exit {ran['returncode']}: {_error_summary(log)}")
            text = log.read_text(errors="replace")
            checkpoints = sorted(p.name for p in (self.work / "torchrun" / "models").glob("*.pt"))
            if not checkpoints:
                raise RuntimeError("torchrun exited 0 but rank 0 wrote no checkpoint")
            return {
                "bundle": bundle,
                "configs": names,
                "backend": "nccl" if self.cuda else "gloo",
                "nccl_info_lines": text.count("NCCL INFO"),
                "checkpoints": checkpoints,
                "wall_s": ran["wall_s"],
                "cpu_s": ran["cpu_s"],
                "command": "torchrun --standalone --nproc_per_node=1 -m monai.bundle run --config_file "
                + repr([f"bundles/{bundle}/configs/{n}.json" for n in names]),
            }

        return body

    def run(self) -> int:
        """All steps in order; 1 when one failed, else 0 (a step killed at the end of the budget is not a failure)."""
        self.step("environment", "environment", self.environment)
        no_amp = None if self.cuda else "AMP needs CUDA (benchmarks/speed.py refuses --amp on without it)"
        by_dims = {dims: [b for b in self.bundles if _spatial_dims(b) == dims] for dims in (2, 3)}
        for bundle in self.bundles:
            self.step(f"speed_amp_on/{bundle}", "speed", self.speed_step(bundle, "on", False), bundle, no_amp)
        for dims in (2, 3):
            name, found = f"train_{dims}d", by_dims[dims]
            missing = None if found else f"no {dims}D bundle among --bundles {' '.join(self.bundles)}"
            chosen = TRAIN_PREFERENCE[dims] if TRAIN_PREFERENCE[dims] in found else (found or [""])[0]
            self.step(name, "train", self.train_step(chosen, name), not_applicable=missing)
        self.step("torchrun", "torchrun", self.torchrun_step((by_dims[2] or self.bundles)[0]))
        for bundle in self.bundles:
            self.step(f"speed_amp_off/{bundle}", "speed", self.speed_step(bundle, "off", False), bundle)
        for bundle in by_dims[2]:
            amp = "on" if self.cuda else "off"
            self.step(f"speed_channels_last/{bundle}", "speed", self.speed_step(bundle, amp, True), bundle)
        self.step("projection", "projection", self.projection)
        failed = [s["step"] for s in self.steps if s["status"] == "failed"]
        return 1 if failed else 0

    def projection(self, _: float) -> dict[str, Any]:
        rows = []
        for bundle in self.bundles:
            source = next(
                (
                    (variant, step["row"])
                    for variant in ("speed_amp_on", "speed_amp_off")
                    for step in self.steps
                    if step["step"] == f"{variant}/{bundle}" and step["status"] == "done"
                ),
                None,
            )
            counts = recipe_counts(bundle)
            row: dict[str, Any] = {"bundle": bundle, **counts}
            if source is None:
                row["reason"] = "no speed figure (its speed steps were skipped or failed)"
            else:
                variant, speed_row = source
                row["from"] = variant
                row["s_per_it"] = {side: speed_row[f"{side}_s_per_it"] for side in ("bundle", "plain")}
                row["s_per_case"] = speed_row["infer_s_per_case"]
                for side in ("bundle", "plain"):
                    row[f"{side}_projected"] = projected_seconds(
                        counts, speed_row[f"{side}_s_per_it"], speed_row["infer_s_per_case"]
                    )
            rows.append(row)
        return {"rows": rows}

    # -- results
    def results(self) -> dict[str, Any]:
        return {
            "command": display_command("benchmarks/gpu_check.py", self.argv),
            "device": self.args.device,
            "started": self.started,
            "budget_s": self.args.budget_s,
            "elapsed_s": self.budget.elapsed(),
            "steps": self.steps,
        }

    def write(self) -> None:
        results = self.results()
        (self.output / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (self.output / "gpu_check.md").write_text(markdown(results) + "\n")


def args_to_argv(args: argparse.Namespace) -> list[str]:
    """``benchmarks/speed.py``'s options as a command line, for the report."""
    argv = ["--bundles", *args.bundles] if args.bundles else []
    argv += ["--schedule", args.schedule, "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
    argv += ["--device", args.device, "--amp", args.amp] + (["--channels_last"] if args.channels_last else [])
    return argv + [f"--override={item}" for item in args.override]


# ------------------------------------------------------------------------------------------------ report
def _environment_line(env: dict[str, Any]) -> str:
    if env.get("gpu"):
        where = (
            f"{env['gpu']} ({env.get('gpu_memory_gb', 0):.0f} GB), driver {env.get('driver')}, CUDA {env['torch_cuda']}"
        )
    else:
        where = f"CPU ({env.get('processor')}, {env.get('cpu_count')} cores, {env.get('torch_threads')} torch threads)"
    versions = f"torch {env.get('torch')}, MONAI {env.get('monai')}, Ignite {env.get('ignite')}"
    return f"{where}; {versions}; Python {env.get('python')}"


def _one_line(text: str, limit: int = 300) -> str:
    """A table cell: newlines and pipes out, at most ``limit`` characters (the JSON keeps the whole text)."""
    flat = " ".join(str(text).split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def markdown(results: dict[str, Any]) -> str:
    """The results as the tables that README and model cards are filled from."""
    import speed

    steps = results["steps"]
    by_name = {step["step"]: step for step in steps}
    env = by_name.get("environment", {})
    lines = [
        "# GPU check",
        "",
        f"Measured with: {_environment_line(env) if env.get('status') == 'done' else 'environment step missing'}; "
        f"{results['started']}; budget {results['budget_s']:.0f} s, used {results['elapsed_s']:.0f} s; "
        f"command: {results['command']}",
        "",
        "## Steps",
        "",
        "| step | status | wall s | CPU s | load | reason |",
        "|---|---|---|---|---|---|",
    ]
    for step in steps:
        seconds = f"{step['seconds']:.1f}" if "seconds" in step else "-"
        cpu = f"{step['cpu_seconds']:.1f}" if "cpu_seconds" in step else "-"
        lines.append(
            f"| {step['step']} | {step['status']} | {seconds} | {cpu} | {step['load']} | "
            f"{_one_line(step.get('reason', ''))} |"
        )
    for variant, title in (
        ("speed_amp_on", "Speed, AMP on (the recipes' default on CUDA)"),
        ("speed_amp_off", "Speed, AMP off"),
        ("speed_channels_last", "Speed, channels-last (2D networks)"),
    ):
        rows = [s["row"] for s in steps if s["step"].startswith(variant + "/") and s["status"] == "done"]
        if rows:
            header = f"### {title}\n\nMeasured with: {rows[0]['options']} (the first row's; each row's in the JSON)"
            lines += ["", speed.markdown(rows, header)]
    projection = by_name.get("projection", {})
    if projection.get("status") == "done":
        lines += [
            "",
            "### Projected wall time of the paper recipes",
            "",
            "Iterations and validations of `train.json`'s schedule on the paper's data set (its case count split by "
            "`train.json`'s fractions), at the seconds per iteration of the speed step named in `from` (bundle "
            "runner / plain loop) and its inference seconds per phantom validation case (real volumes may be larger).",
            "",
            "| bundle | data set (cases) | training / unlabeled / validation | iterations (epochs x per epoch) | "
            "validations x cases | from (s/it bundle / plain, s/case) | projected, bundle runner | "
            "projected, plain loop |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in projection["rows"]:
            ran = "bundle_projected" in row
            source = row.get("from", row.get("reason"))
            if "s_per_it" in row:
                source += f" ({row['s_per_it']['bundle']:.3f} / {row['s_per_it']['plain']:.3f} s/it, "
                source += f"{row['s_per_case']:.3f} s/case)"
            lines.append(
                f"| {row['bundle']} | {row['data_set']} ({row['cases']}) | {row['training']} / {row['unlabeled']} / "
                f"{row['validation']} | {row['iterations']} ({row['epochs']} x {row['iterations_per_epoch']}) | "
                f"{row['validations']} x {row['validation']} | {source} | "
                + (
                    f"{_hours(row['bundle_projected']['total_s'])} "
                    f"(validation {_hours(row['bundle_projected']['validation_s'])}) | "
                    f"{_hours(row['plain_projected']['total_s'])} |"
                    if ran
                    else "- | - |"
                )
            )
    trained = [by_name[n] for n in ("train_2d", "train_3d") if by_name.get(n, {}).get("status") == "done"]
    if trained:
        lines += [
            "",
            "### Short trainings through the bundle runner",
            "",
            "| step | bundle | configs | iterations | batch | s/it | run wall / CPU s | "
            "loss, first tenth -> last tenth | falls | validations (epoch: metrics) | validation ran on | "
            "AMP trainer / evaluator | peak CUDA MB | curves |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for step in trained:
            metrics = "; ".join(
                f"{v['epoch']}: " + ", ".join(f"{k} {x:.3f}" for k, x in v.items() if k != "epoch")
                for v in step["validations"]
            )
            batch = "x".join(map(str, step["batch_shape"])) if step.get("batch_shape") else "?"
            peak = f"{step['peak_cuda_mb']:.0f}" if "peak_cuda_mb" in step else "n/a"
            lines.append(
                f"| {step['step']} | {step['bundle']} | {' + '.join(step['configs'])} | {step['iterations']} | "
                f"{batch} | {step['s_per_iteration']:.3f} | {step['run_wall_s']:.1f} / {step['run_cpu_s']:.1f} | "
                f"{step['loss_first_tenth']:.4f} -> "
                f"{step['loss_last_tenth']:.4f} | {'yes' if step['loss_fell'] else 'no'} | {metrics} | "
                f"{', '.join(step['validation_devices'])} | {step['trainer_amp']} / {step['evaluator_amp']} | {peak} | "
                f"{step.get('curves', '-')} |"
            )
    run = by_name.get("torchrun", {})
    if run.get("status") == "done":
        lines += [
            "",
            "### torchrun with multi_gpu_train.json",
            "",
            f"`{run['command']}` (bundle {run['bundle']}): exit 0 in {run['wall_s']:.1f} s wall ({run['cpu_s']:.1f} s "
            f"CPU), backend {run['backend']}, {run['nccl_info_lines']} `NCCL INFO` log lines, rank 0 wrote "
            f"{', '.join(run['checkpoints'])}.",
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ entry point
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=False, help="results folder (created)")
    parser.add_argument("--device", default="cuda", help="cuda (paper shapes) or cpu (quick shapes)")
    parser.add_argument("--budget_s", type=float, default=DEFAULT_BUDGET_S, help="total seconds for all steps")
    parser.add_argument("--bundles", nargs="*", default=None, help="bundles (default: all with quick.json)")
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations per speed worker on CUDA")
    parser.add_argument("--steps", nargs="*", default=None, help="only these step kinds or names (e.g. speed train)")
    parser.add_argument("--work_dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--report_only", action="store_true", help="only remake gpu_check.md from gpu_check.json")
    parser.add_argument("--worker", choices=("train",), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="*", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker_overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--result_file", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker == "train":
        with contextlib.redirect_stdout(sys.stderr):
            result = worker_train(args.bundles[0], args.configs, json.loads(args.worker_overrides))
        args.result_file.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.output is None:
        raise SystemExit("--output is required")
    if args.report_only:
        text = markdown(json.loads((args.output / "gpu_check.json").read_text()))
        (args.output / "gpu_check.md").write_text(text + "\n")
        print(text)
        return 0
    with contextlib.ExitStack() as stack:
        if args.work_dir is None:
            args.work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check_")))
        args.work_dir.mkdir(parents=True, exist_ok=True)
        check = Check(args, argv)
        code = check.run()
    print(f"results: {args.output / 'gpu_check.md'}")
    return code


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
