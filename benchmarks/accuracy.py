"""Accuracy on equal terms: label-efficiency curves of every bundle, each method beside the arms it is compared with.

Arms (a bundle joins by having one of these overlays of its ``train.json``):

* a semi-supervised bundle (``configs/supervised.json``): the method against its supervised-only baseline (the same
  network trained on the labeled cases only), at each labeled budget, plus the **full-label upper bound** (the
  baseline with every training case labeled);
* a fully supervised bundle: the bundle's recipe against its comparison overlays at all labels: CMUNeXt with the
  Boundary DoU loss against ``dice_bce.json`` (the paper's 0.5 BCE + Dice), DMGSA against its four
  ``ablation_*.json``.

For each bundle, labeled budget and seed, every arm trains through the bundle runner (``python -m monai.bundle run
training``) with the same data, the same split and the same labeled cases (the ``seed`` key fixes the split and the
labeled draw of ``common.data.split_cases``; the budget goes through the bundle's ``labeled_fraction`` or
``labeled_count``), selects its checkpoint on the validation split (``model.pt``, the best validation key metric), and
``evaluate.json`` scores that checkpoint on the test split. Under ``--output`` (default ``benchmarks/results``):

* ``accuracy.csv``: one row per run (bundle, method, start, data, budget, labeled cases, seed, every test metric, s);
* ``accuracy.md``: per bundle, mean +- sample standard deviation over seeds of every metric, and the label-efficiency
  table: each arm's mean and spread, the full-label upper bound, and the **paired** difference method - comparator
  over seeds with a 95 % t-interval;
* ``accuracy_<bundle>.png`` (one per bundle): test Dice against the labeled cases, every arm and seed, the upper
  bound as a band; ``accuracy.png``: all bundles side by side.

Budgets (``--fractions``): a value below 1 is a fraction of the training cases, a value above 1 a count of cases;
the upper bound (1: every training case) is added for the bundles that take a budget. A bundle without a labeled key
(CMUNeXt, DMGSA: fully supervised) runs at all labels only.

Starts (``--warm_start``): the papers start their 2D encoders from ImageNet weights, which cannot be downloaded here.
As the CPU stand-in, ``--warm_start`` adds warm arms: both the method and the baseline start from one shared
supervised checkpoint trained on the same labeled cases, which is the cold baseline run's validation-selected
``model.pt`` of that budget and seed (tensors matched by name and shape; a network with two members, such as DFCPS's
pair, gets the warm weights in the member the baseline trained and keeps its own initialisation in the other). Both
warm arms then run the same schedule again, so they see twice the supervised iterations of a cold arm; cold and warm
rows are kept apart (the ``start`` column; ``<method> (warm)`` in the tables).

Schedules:

* ``reduced`` (default): ``train.json`` + ``quick.json`` + ``benchmark.json`` when the bundle has one (a smaller
  network and a few hundred iterations on a phantom, for a CPU), + the arm's overlay.
* ``paper``: ``train.json`` (+ the arm's overlay): the paper's recipe, meant for a GPU and the real data set.

``--dataset_dir`` (and ``--dataset_layout``) replaces the phantom with a real data set in any layout the bundle
reads, at either schedule; the table's header and the ``data`` column say which data were used.

Usage (from the repository root)::

    python benchmarks/accuracy.py --jobs 2 --bundles dfcps          # phantom, reduced schedule, 1/16 1/8 1/4, 5 seeds
    python benchmarks/accuracy.py --jobs 2 --bundles dfcps --warm_start
    python benchmarks/accuracy.py --bundles ugmcl --fractions 8 16 --seeds 0 1 2 \\
        --schedule paper --dataset_dir /data/LA2018                 # the LA protocol (8 and 16 labeled), on a GPU
    python benchmarks/accuracy.py --dry_run                          # the plan and the time estimate, nothing run
    python benchmarks/accuracy.py --report_only                      # tables and plots again from accuracy.csv

Resumable: a run whose test metrics exist and whose recorded command (configs, overrides, bundle version) is the one
planned now is reused, not repeated; any other run starts afresh (delete ``<output>/accuracy/runs`` to redo all).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import statistics
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _common import (
    RESULTS,
    ROOT,
    bundles_with,
    config_files,
    display_command,
    display_path,
    load_average,
    monai_bundle_command,
    run_logged,
)
from timing import describe_machine

__all__ = [
    "Arm",
    "Run",
    "arms",
    "budget_value",
    "build_datalist",
    "estimate_seconds",
    "execute",
    "label_efficiency",
    "labeled_key",
    "main",
    "markdown",
    "mean_std",
    "paired_difference",
    "parse_args",
    "plan",
    "plot",
    "plot_bundle",
    "prepare_data",
    "read_csv",
    "read_metrics",
    "run_key",
    "summarise",
    "warm_network_expression",
    "write_csv",
]

BASELINE = "supervised"
COMPARATOR_CONFIGS = ("supervised", "dice_bce", "ablation_*")  # overlays that make an arm beside the bundle's method
LABELED_KEYS = ("labeled_fraction", "labeled_count", "labeled")  # the first a bundle's train.json has is used
ALL_LABELED = 1.0  # the budget "every training case labeled" (split_cases reads the float 1.0 as the fraction 1)
DEFAULT_FRACTIONS = (0.0625, 0.125, 0.25)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
PRIMARY_METRICS = ("test_mean_dice", "test_dice")  # the first one a row has is the curve's y axis
HEADLINE_METRICS = ("test_mean_dice", "test_dice", "test_iou", "test_dlr", "test_td", "test_dbr", "test_bd", "test_ccf")
PRIMARY_METRIC = PRIMARY_METRICS[0]
MISSED_SUFFIX = "_missed"  # the evaluate handlers' count of missed cases (common.handlers.distances.MISSED_SUFFIX)
DISTANCE_METRICS = ("_hd95", "_asd")  # metrics whose missed cases the tables count
NUM_OVERLAYS = 2  # overlay PNGs per evaluated run
CONFIDENCE = 0.95
COLD, WARM = "cold", "warm"


@dataclass(frozen=True)
class Arm:
    """One arm of a bundle's comparison: its name in the tables and the overlays it layers on the schedule.

    ``role`` is ``"method"`` for the bundle's own recipe and ``"comparator"`` for what it is compared with.
    """

    name: str
    overlays: tuple[str, ...]
    role: str


@dataclass
class Run:
    """One training + evaluation: one arm of a bundle at one labeled budget, seed and start."""

    bundle: str
    method: str
    fraction: float
    seed: int
    configs: list[str]
    overrides: dict[str, object] = field(default_factory=dict)
    start: str = COLD
    warm_from: Path | None = None  # the checkpoint a warm run starts from (the cold baseline's model.pt)
    data: str = "phantom"

    @property
    def folder(self) -> Path:
        return Path(str(self.overrides["output_dir"])).parent

    @property
    def metrics_file(self) -> Path:
        return self.folder / "eval" / "evaluate" / "metrics.csv"

    @property
    def label(self) -> str:
        """The run's arm as the tables name it: the method, ``(warm)`` appended for a warm start."""
        return self.method if self.start == COLD else f"{self.method} ({WARM})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="*", default=None, help="bundles (default: every bundle with an arm)")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=list(DEFAULT_FRACTIONS),
        help="labeled budgets: fractions (< 1) or counts (> 1); the upper bound (all labeled) is added",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="split and init seeds")
    parser.add_argument("--schedule", choices=("reduced", "paper"), default="reduced")
    parser.add_argument("--dataset_dir", default=None, help="a real data set (default: each bundle's phantom)")
    parser.add_argument("--dataset_layout", default=None, help="its layout, when not the bundle's default")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="any config id, all runs")
    parser.add_argument(
        "--overlay",
        action="append",
        default=[],
        metavar="NAME",
        help="a config of the bundle (configs/NAME.json) layered after the schedule on every run, e.g. a calibrated "
        "phantom; runs of each overlay set are kept apart",
    )
    parser.add_argument("--warm_start", action="store_true", help="add warm arms (shared supervised warm start)")
    parser.add_argument(
        "--arms", nargs="*", default=None, help="only these arms (e.g. supervised: a calibration of the baseline)"
    )
    parser.add_argument("--no_upper_bound", action="store_true", help="leave out the full-label upper bound")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each then keeps to one CPU thread)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--dry_run", action="store_true", help="print the plan and the time estimate only")
    parser.add_argument("--report_only", action="store_true", help="only remake tables and plots from the CSV")
    return parser.parse_args(argv)


def labeled_key(bundle: str) -> str | None:
    """The top-level id through which a bundle takes its labeled budget, or None for a fully supervised bundle."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(bundle, ["train"]))
    for key in LABELED_KEYS:
        if key in parser:
            return key
    return None


def arms(bundle: str) -> list[Arm]:
    """The bundle's method followed by its comparators: one arm per overlay of ``COMPARATOR_CONFIGS`` it has."""
    folder = ROOT / "bundles" / bundle / "configs"
    found = [Arm(bundle, (), "method")]
    for pattern in COMPARATOR_CONFIGS:
        for path in sorted(folder.glob(f"{pattern}.json")):
            found.append(Arm(path.stem, (path.stem,), "comparator"))
    return found


def budget_value(fraction: float) -> int | float:
    """The value a bundle's labeled key receives: a count (int) above 1, a fraction in (0, 1] otherwise."""
    if fraction <= 0:
        raise ValueError(f"a labeled budget must be positive, got {fraction}")
    if fraction > 1:
        if fraction != int(fraction):
            raise ValueError(f"a labeled count must be a whole number, got {fraction}")
        return int(fraction)
    return float(fraction)


def _budgets(args: argparse.Namespace, key: str | None) -> list[float]:
    if key is None:  # a fully supervised bundle: every training case is labeled, nothing to vary
        return [ALL_LABELED]
    budgets = sorted({float(f) for f in args.fractions})
    if not getattr(args, "no_upper_bound", False) and ALL_LABELED not in budgets:
        budgets.append(ALL_LABELED)
    return budgets


def plan(args: argparse.Namespace) -> list[Run]:
    """Every run of the benchmark, arms of one budget and seed adjacent so that a cut-short run still pairs them.

    For a bundle with a labeled key, each budget below "all" runs every arm; the upper bound (all labeled) runs the
    comparators only (the method has no unlabeled case left to use). Warm runs (``--warm_start``) start from the cold
    baseline run of their budget and seed, whose folder they name in ``warm_from``; :func:`main` runs them after it.
    """
    bundles = args.bundles if args.bundles else [b for b in bundles_with("evaluate") if len(arms(b)) > 1]
    work = args.output / "accuracy"
    extra = dict(item.split("=", 1) for item in args.override)
    overlays = list(getattr(args, "overlay", []) or [])
    tag = "".join(f"+{name}" for name in overlays)
    data = display_path(args.dataset_dir) if args.dataset_dir else "phantom"
    runs = []
    for bundle in bundles:
        key = labeled_key(bundle)
        base = ["train", "quick", "benchmark"] if args.schedule == "reduced" else ["train"]
        starts = [COLD, WARM] if getattr(args, "warm_start", False) and key is not None else [COLD]
        for fraction in _budgets(args, key):
            for start in starts:
                for seed in args.seeds:
                    for arm in arms(bundle):
                        if getattr(args, "arms", None) and arm.name not in args.arms:
                            continue
                        if key is not None and fraction == ALL_LABELED and arm.role == "method":
                            continue
                        if start == WARM and fraction == ALL_LABELED:
                            continue  # the upper bound stays cold: it is the reference, not a contender
                        name = f"{arm.name}{'' if start == COLD else '_warm'}_f{fraction:g}_s{seed}"
                        folder = work / "runs" / (bundle + tag) / name
                        overrides: dict[str, object] = {
                            "seed": seed,
                            "ckpt_dir": str(folder / "models"),
                            "output_dir": str(folder / "eval"),
                            "resume": False,
                            "progress_bar": False,
                        }
                        if key is not None:
                            overrides[key] = budget_value(fraction)
                        if args.dataset_dir:
                            overrides["dataset_dir"] = args.dataset_dir
                        else:  # one phantom per bundle, schedule and overlays, outside the source tree
                            overrides["phantom_dir"] = str(work / "data" / f"{bundle}_{args.schedule}{tag}")
                        if args.dataset_layout:
                            overrides["dataset_layout"] = args.dataset_layout
                        overrides.update(extra)
                        names = base + overlays + list(arm.overlays)
                        configs = config_files(bundle, names, optional=["benchmark"])
                        warm_from = None
                        if start == WARM:
                            cold = work / "runs" / (bundle + tag) / f"{BASELINE}_f{fraction:g}_s{seed}"
                            warm_from = cold / "models" / "model.pt"
                            overrides["network"] = warm_network_expression(configs, warm_from)
                        runs.append(
                            Run(bundle, arm.name, fraction, seed, configs, overrides, start, warm_from, data + tag)
                        )
    return runs


def warm_network_expression(configs: list[str], checkpoint: Path) -> str:
    """The ``network`` expression of a warm run: the bundle's own network, then the warm weights copied into it.

    ``monai.networks.utils.copy_model_state`` copies every tensor whose name and shape match; the expression refuses
    a checkpoint of which no tensor matches (a warm start that would silently be cold).

    Args:
        configs: the run's config files (their ``network`` entry, a ``$`` expression, is wrapped).
        checkpoint: a ``model.pt`` saved by a bundle's best-model saver: the network's plain state dict (Ignite's
            ``Checkpoint`` saves a single object unwrapped; the model zoo's form), or ``{"model": state dict}``.

    Returns:
        a config expression string for the ``network`` id.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs)
    original = parser.get("network")
    if not (isinstance(original, str) and original.startswith("$")):
        raise ValueError(f"the network entry of {configs[0]} is not an expression, cannot wrap it: {original!r}")
    failure = f"warm start {checkpoint}: no tensor name and shape matches the network"
    return (
        "$(lambda net, state: net if monai.networks.utils.copy_model_state(net, state, inplace=True)[1] "
        f"else (_ for _ in ()).throw(ValueError({failure!r})))"
        f"({original[1:]}, (lambda saved: saved['model'] if list(saved) == ['model'] else saved)"
        f"(torch.load({str(checkpoint)!r}, map_location='cpu', weights_only=True)))"
    )


def build_datalist(run: Run, output_dir: Path, updates: dict[str, object] | None = None) -> dict[str, list]:
    """The datalist a run's training builds (the phantom written on first use), its file written to ``output_dir``.

    Args:
        run: a planned run.
        output_dir: where ``datalist.json`` goes (not the run's folder: nothing of the run is written).
        updates: config ids set after the run's overrides (tests shrink the phantom with them).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(run.configs)
    parser.update({k: v for k, v in run.overrides.items() if k != "network"})
    parser.update(dict(updates or {}))
    parser["output_dir"] = str(output_dir)
    return parser.get_parsed_content("datalist")


def prepare_data(runs: list[Run]) -> None:
    """Write each bundle's phantom once, before parallel runs could race to write it."""
    done = set()
    for run in runs:
        where = run.overrides.get("phantom_dir")
        if where is None or where in done:
            continue
        build_datalist(run, Path(str(where)).parent / f"{Path(str(where)).name}_split")
        done.add(where)


def read_metrics(path: Path) -> dict[str, float]:
    """MONAI ``MetricsSaver``'s ``metrics.csv``: one ``name<delimiter>value`` line per metric."""
    values = {}
    for line in path.read_text().splitlines():
        for delimiter in ("\t", ","):
            if delimiter in line:
                name, value = line.split(delimiter, 1)
                values[name.strip()] = float(value)
                break
    return values


def labeled_cases(run: Run) -> int:
    """The number of labeled training cases of a run, from the datalist the bundle wrote with its split."""
    datalist = json.loads((run.folder / "eval" / "datalist.json").read_text())
    return len(datalist["training"])


def _bundle_version(bundle: str) -> str:
    path = ROOT / "bundles" / bundle / "configs" / "metadata.json"
    return str(json.loads(path.read_text()).get("version", "")) if path.is_file() else ""


def run_key(run: Run) -> str:
    """A fingerprint of what a run computes: its configs (names and contents), overrides and bundle version.

    A saved row is reused only when its key is this one, so that a changed config, override or bundle release reruns.
    """
    content = {
        "configs": [(Path(p).name, Path(p).read_text()) for p in run.configs],
        "overrides": {k: str(v) for k, v in sorted(run.overrides.items())},
        "version": _bundle_version(run.bundle),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def execute(run: Run, threads: int | None) -> dict[str, object]:
    """Train and evaluate one run and return its CSV row; a run already scored with the same key returns its row."""
    cached = run.folder / "row.json"
    key = run_key(run)
    if run.metrics_file.is_file() and cached.is_file():
        row = json.loads(cached.read_text())
        if row.get("run_key") == key:
            return row
    if run.warm_from is not None and not Path(run.warm_from).is_file():
        raise FileNotFoundError(f"warm start {run.warm_from} missing: its cold baseline run has not finished")
    started = load_average()
    cached.unlink(missing_ok=True)  # a row of another key, or none: the run is done afresh
    train_cmd = monai_bundle_command("training", run.configs, run.overrides)
    train_s = run_logged(train_cmd, run.folder / "train.log", threads)
    eval_configs = run.configs + config_files(run.bundle, ["evaluate"])
    eval_cmd = monai_bundle_command(None, eval_configs, {**run.overrides, "num_overlays": NUM_OVERLAYS})
    eval_s = run_logged(eval_cmd, run.folder / "eval.log", threads)
    row: dict[str, object] = {
        "bundle": run.bundle,
        "method": run.method,
        "start": run.start,
        "data": run.data,
        "fraction": run.fraction,
        "labeled": labeled_cases(run),
        "seed": run.seed,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "load_start": started,
        "load_end": load_average(),
        "run_key": key,
    }
    row.update(read_metrics(run.metrics_file))
    cached.write_text(json.dumps(row))
    return row


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, object]]:
    with open(path, newline="") as f:
        return [dict(row) for row in csv.DictReader(f)]


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _label(row: dict[str, object]) -> str:
    """A row's arm: its method, ``(warm)`` appended for a warm start (rows of older CSVs have no start: cold)."""
    start = str(row.get("start") or COLD)
    return str(row["method"]) if start == COLD else f"{row['method']} ({start})"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def paired_difference(
    method: dict[int, float], baseline: dict[int, float], confidence: float = CONFIDENCE
) -> tuple[float, float, float, int]:
    """Mean of the per-seed differences method - baseline and its two-sided Student-t confidence interval.

    The arms of one seed share the split and the labeled cases, so the seeds are pairs: the interval is the one-sample
    t-interval of the differences ``d_s = method_s - baseline_s`` (``mean(d) +- t_{(1+c)/2, n-1} sd(d) / sqrt(n)``,
    ``sd`` the sample standard deviation), not an interval of two independent samples.

    Args:
        method: ``{seed: metric}`` of the method.
        baseline: ``{seed: metric}`` of the comparator; only seeds in both with finite values pair.
        confidence: the interval's coverage, e.g. 0.95.

    Returns:
        ``(mean, low, high, n)``; the bounds are NaN below two pairs, everything NaN without a pair.
    """
    from scipy.stats import t

    diffs = [method[s] - baseline[s] for s in sorted(set(method) & set(baseline))]
    diffs = [d for d in diffs if math.isfinite(d)]
    if not diffs:
        return float("nan"), float("nan"), float("nan"), 0
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, float("nan"), float("nan"), 1
    half = float(t.ppf((1 + confidence) / 2, len(diffs) - 1)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half, len(diffs)


def summarise(rows: list[dict[str, object]]) -> dict[tuple[str, float, str], dict[str, tuple[float, float, int]]]:
    """``{(bundle, fraction, arm): {metric: (mean, std, n)}}`` over seeds, ``n`` the runs with a finite value.

    ``arm`` is the method, ``"<method> (warm)"`` for warm-started rows. A ``<metric>_missed`` column (the evaluate
    handlers' count of test cases whose prediction or truth is empty while the other is not, see
    ``common.handlers.distances``) is summed over the seeds instead: ``(total, nan, runs)``.
    """
    groups: dict[tuple[str, float, str], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["bundle"]), _number(row["fraction"]), _label(row)), []).append(row)
    summary = {}
    for key, members in groups.items():
        names = [k for k in members[0] if str(k).startswith("test_")]
        metrics = [k for k in names if not k.endswith(MISSED_SUFFIX)]
        # a column of another bundle is empty in these rows; a column with values is kept even when none is finite
        metrics = [k for k in metrics if any(r.get(k) not in (None, "") for r in members)]
        summary[key] = {}
        for m in metrics:
            values = [_number(r.get(m)) for r in members]
            summary[key][m] = (*mean_std(values), sum(math.isfinite(v) for v in values))
        for m in (k for k in names if k.endswith(MISSED_SUFFIX)):
            counts = [_number(r.get(m)) for r in members if math.isfinite(_number(r.get(m)))]
            summary[key][m] = (float(sum(counts)), float("nan"), len(counts))
        summary[key]["labeled"] = (*mean_std([_number(r["labeled"]) for r in members]), len(members))
    return summary


def _primary(rows: list[dict[str, object]]) -> str:
    for name in PRIMARY_METRICS:
        if any(row.get(name) not in (None, "") for row in rows):
            return name
    return PRIMARY_METRIC


def _per_seed(rows: list[dict[str, object]], bundle: str, fraction: float, label: str, metric: str) -> dict[int, float]:
    return {
        int(_number(r["seed"])): _number(r.get(metric))
        for r in rows
        if r["bundle"] == bundle and _number(r["fraction"]) == fraction and _label(r) == label
    }


def label_efficiency(rows: list[dict[str, object]], bundle: str) -> list[dict[str, object]]:
    """The label-efficiency table of one bundle: per budget, start and comparator, both arms and their paired gap.

    Returns:
        one dict per (budget below all labels or the only budget, start, comparator, headline metric):
        ``fraction, labeled, start, method, comparator, metric, method (mean, std, n), comparator (...),
        difference (mean, low, high, n)`` and ``upper`` (the full-label upper bound's (mean, std, n) or None).
    """
    mine = [r for r in rows if r["bundle"] == bundle]
    if not mine:
        return []
    summary = summarise(mine)
    labels = {_label(r) for r in mine}
    method_rows = [r for r in mine if str(r["method"]) == bundle]
    fractions = sorted({_number(r["fraction"]) for r in method_rows})
    comparators = sorted({str(r["method"]) for r in mine} - {bundle})
    headline = [m for m in HEADLINE_METRICS if any(r.get(m) not in (None, "") for r in mine)]
    table = []
    for fraction in fractions:
        for start in (COLD, WARM):
            suffix = "" if start == COLD else f" ({WARM})"
            if bundle + suffix not in labels:
                continue
            for comparator in comparators:
                if comparator + suffix not in labels:
                    continue
                for metric in headline:
                    m_key, c_key = (bundle, fraction, bundle + suffix), (bundle, fraction, comparator + suffix)
                    if m_key not in summary or c_key not in summary or metric not in summary[m_key]:
                        continue
                    upper_key = (bundle, ALL_LABELED, comparator)
                    upper = summary.get(upper_key, {}).get(metric) if fraction != ALL_LABELED else None
                    table.append(
                        {
                            "fraction": fraction,
                            "labeled": summary[m_key]["labeled"][0],
                            "start": start,
                            "method": bundle,
                            "comparator": comparator,
                            "metric": metric,
                            "method_stats": summary[m_key][metric],
                            "comparator_stats": summary[c_key].get(metric, (math.nan, math.nan, 0)),
                            "difference": paired_difference(
                                _per_seed(mine, bundle, fraction, bundle + suffix, metric),
                                _per_seed(mine, bundle, fraction, comparator + suffix, metric),
                            ),
                            "upper": upper,
                        }
                    )
    return table


def _cell(stats: dict[str, tuple[float, float, int]], metric: str) -> str:
    """``mean ± std``; runs whose value is not finite are named, never dropped without a word."""
    mean, std, finite = stats[metric]
    runs = stats["labeled"][2]
    cell = f"{mean:.3f} ± {std:.3f}"
    if finite < runs:
        cell += f" ({runs - finite} of {runs} runs not finite, left out)"
    return cell


def _missed_cell(stats: dict[str, tuple[float, float, int]], metric: str) -> str:
    """Test cases missed (summed over seeds) for a distance metric, or why the count is absent."""
    if metric + MISSED_SUFFIX not in stats:
        return "not recorded"
    total, _, runs = stats[metric + MISSED_SUFFIX]
    return f"{total:g}" if runs == stats["labeled"][2] else f"{total:g} ({runs} of {stats['labeled'][2]} runs)"


def _budget_name(fraction: float) -> str:
    return "all" if fraction == ALL_LABELED else f"{fraction:g}"


def _efficiency_lines(rows: list[dict[str, object]], bundle: str) -> list[str]:
    table = label_efficiency(rows, bundle)
    if not table:
        return []
    lines = [
        f"Label efficiency, {bundle} against each comparator: mean ± std over seeds; the difference is paired over "
        f"seeds (same split and labeled cases), with its {CONFIDENCE:.0%} Student-t interval; the upper bound is the "
        "comparator trained with every training case labeled (cold start).",
        "",
        "| labeled fraction | labeled cases | start | comparator | metric | method | comparator | "
        f"method - comparator [{CONFIDENCE:.0%} CI] | pairs | upper bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in table:
        mean, low, high, pairs = entry["difference"]
        ci = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]" if math.isfinite(low) else f"{mean:+.3f} [n/a]"
        if math.isfinite(low) and (low > 0 or high < 0):
            ci = f"**{ci}**"
        upper = entry["upper"]
        upper_cell = f"{upper[0]:.3f} ± {upper[1]:.3f}" if upper else "-"
        m, c = entry["method_stats"], entry["comparator_stats"]
        lines.append(
            f"| {_budget_name(entry['fraction'])} | {entry['labeled']:g} | {entry['start']} | {entry['comparator']} | "
            f"{entry['metric']} | {m[0]:.3f} ± {m[1]:.3f} | {c[0]:.3f} ± {c[1]:.3f} | {ci} | {pairs} | {upper_cell} |"
        )
    lines += ["", "A bold difference: its interval excludes 0.", ""]
    return lines


def markdown(rows: list[dict[str, object]], header: str) -> str:
    """Per bundle: every test metric (mean +- std over seeds) per arm and budget, then the label-efficiency table."""
    summary = summarise(rows)
    lines = [header, ""]
    for bundle in sorted({k[0] for k in summary}):
        keys = sorted((k for k in summary if k[0] == bundle), key=lambda k: (k[1], k[2] != bundle, k[2]))
        metrics: list[str] = []
        for key in keys:
            metrics += [
                m for m in summary[key] if m != "labeled" and not m.endswith(MISSED_SUFFIX) and m not in metrics
            ]
        distances = [m for m in metrics if m.endswith(DISTANCE_METRICS)]
        missed_columns = [f"{m} missed cases" for m in distances]
        data = sorted({str(r.get("data") or "not recorded") for r in rows if r["bundle"] == bundle})
        lines += [
            f"**{bundle}** (data: {', '.join(data)}; mean ± std over seeds; each comparator trains the same network "
            "on the same labeled cases)",
            "",
            "| labeled fraction | labeled cases | method | seeds | " + " | ".join(metrics + missed_columns) + " |",
            "|---|---|---|---|" + "---|" * (len(metrics) + len(missed_columns)),
        ]
        for key in keys:
            stats = summary[key]
            cells = [_cell(stats, m) if m in stats else "-" for m in metrics]
            cells += [_missed_cell(stats, m) if m in stats else "-" for m in distances]
            first = f"| {key[1]:g} | {stats['labeled'][0]:g} | {key[2]} | {stats['labeled'][2]} | "
            lines.append(first + " | ".join(cells) + " |")
        lines.append("")
        if distances:
            lines += [
                f"- Missed cases (summed over seeds): test cases whose prediction is empty while the truth is not, or "
                f"the reverse; their {' and '.join(distances)} is the image diagonal in mm (the worst possible), so a "
                "miss counts as a failure in the mean. A case with both empty is left out of the distance means.",
                "",
            ]
        lines += _efficiency_lines(rows, bundle)
    return "\n".join(lines)


def _draw(ax: object, rows: list[dict[str, object]], bundle: str) -> None:
    """One bundle's curves on ``ax``: primary metric against labeled cases, each arm mean +- std and every seed.

    With budgets below all labels, the full-label upper bound is a dotted line with its +- std band; a fully
    supervised bundle (one budget) shows its arms side by side at that budget.
    """
    mine = [r for r in rows if r["bundle"] == bundle]
    metric = _primary(mine)
    summary = summarise(mine)
    partial = any(k[1] < ALL_LABELED for k in summary)
    labels = sorted({_label(r) for r in mine}, key=lambda s: (not s.startswith(bundle), s))
    for index, label in enumerate(labels):
        keys = sorted(
            k for k in summary if k[2] == label and metric in summary[k] and (k[1] < ALL_LABELED or not partial)
        )
        if not keys:
            continue
        shift = 1 + 0.03 * (index - (len(labels) - 1) / 2)  # side by side on the log axis
        line = ax.errorbar(
            [summary[k]["labeled"][0] * shift for k in keys],
            [summary[k][metric][0] for k in keys],
            yerr=[summary[k][metric][1] for k in keys],
            marker="o",
            capsize=4,
            linestyle="--" if label.endswith(f"({WARM})") else "-",
            label=label,
        )
        fractions = {k[1] for k in keys}
        seeds = [r for r in mine if _label(r) == label and _number(r["fraction"]) in fractions]
        ax.scatter(
            [_number(r["labeled"]) * shift for r in seeds],
            [_number(r.get(metric)) for r in seeds],
            s=12,
            alpha=0.5,
            color=line[0].get_color(),
        )
    if partial:
        for key in (k for k in summary if k[1] == ALL_LABELED and metric in summary[k]):
            mean, std, _ = summary[key][metric]
            ax.axhline(mean, color="black", linestyle=":", label=f"upper bound: {key[2]}, all labeled")
            ax.axhspan(mean - std, mean + std, color="black", alpha=0.08)
    ax.set_xscale("log", base=2)
    ax.set_title(bundle)
    ax.set_xlabel("labeled training cases")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    """Every bundle's label-efficiency curves side by side in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bundles = sorted({str(r["bundle"]) for r in rows})
    fig, axes = plt.subplots(1, max(1, len(bundles)), figsize=(5 * max(1, len(bundles)), 4), squeeze=False)
    for ax, bundle in zip(axes[0], bundles):
        _draw(ax, rows, bundle)
    fig.suptitle(textwrap.fill(title, 60 * max(1, len(bundles))), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_bundle(rows: list[dict[str, object]], bundle: str, path: Path, title: str) -> None:
    """One bundle's label-efficiency curves (``accuracy_<bundle>.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    _draw(ax, rows, bundle)
    fig.suptitle(textwrap.fill(title, 90), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def estimate_seconds(runs: list[Run], rows: list[dict[str, object]], jobs: int) -> tuple[float, int]:
    """Wall seconds the runs still to do will take, from the finished rows of the same bundle and arm.

    A run without a finished row of its bundle and arm is estimated from its bundle's rows, else left out.

    Returns:
        ``(seconds, runs without any estimate)``; seconds are divided by ``jobs`` (runs at a time).
    """
    per_arm: dict[tuple[str, str], list[float]] = {}
    per_bundle: dict[str, list[float]] = {}
    for row in rows:
        seconds = _number(row.get("train_s")) + _number(row.get("eval_s"))
        if math.isfinite(seconds):
            per_arm.setdefault((str(row["bundle"]), str(row["method"])), []).append(seconds)
            per_bundle.setdefault(str(row["bundle"]), []).append(seconds)
    total, unknown = 0.0, 0
    for run in runs:
        known = per_arm.get((run.bundle, run.method)) or per_bundle.get(run.bundle)
        if known:
            total += statistics.fmean(known)
        else:
            unknown += 1
    return total / max(1, jobs), unknown


def _finished(run: Run) -> bool:
    cached = run.folder / "row.json"
    if not (run.metrics_file.is_file() and cached.is_file()):
        return False
    return json.loads(cached.read_text()).get("run_key") == run_key(run)


def _saved_rows(runs: list[Run]) -> list[dict[str, object]]:
    """Rows saved by earlier runs of the bundles planned (any key): the basis of the time estimate."""
    folders = {run.folder.parent for run in runs}
    return [json.loads(p.read_text()) for folder in folders if folder.is_dir() for p in folder.glob("*/row.json")]


def _run_all(runs: list[Run], jobs: int, csv_path: Path) -> tuple[list[dict[str, object]], list[str], float]:
    """Cold runs, then warm runs (they start from the cold baselines); a progress line with the ETA per run."""
    threads = 1 if jobs > 1 else None
    rows: list[dict[str, object]] = []
    failures: list[str] = []
    start = time.perf_counter()
    history = _saved_rows(runs)
    for wave in ([r for r in runs if r.warm_from is None], [r for r in runs if r.warm_from is not None]):
        if not wave:
            continue
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(execute, run, threads): run for run in wave}
            for future in as_completed(futures):
                run = futures[future]
                name = f"{run.bundle}/{run.label} f={run.fraction:g} seed={run.seed}"
                try:
                    row = future.result()
                except Exception as error:  # one failed run is reported; the others still count
                    failures.append(name)
                    print(f"{name}: failed: {error}", flush=True)
                    continue
                rows.append(row)
                write_csv(rows, csv_path)
                left = [r for r in runs if not _finished(r)]
                eta, unknown = estimate_seconds(left, history + rows, jobs)
                print(
                    f"[{len(rows) + len(failures)}/{len(runs)} {time.perf_counter() - start:.0f} s] {name}: "
                    f"{_primary([row])} {_number(row.get(_primary([row]))):.3f} (train {row['train_s']} s, "
                    f"load {row['load_end']}); about {eta / 60:.0f} min left"
                    + (f" + {unknown} run(s) of unknown length" if unknown else ""),
                    flush=True,
                )
    return rows, failures, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = (args.output / f"accuracy.{ext}" for ext in ("csv", "md", "png"))
    threads_note = ", one torch thread each" if args.jobs > 1 else ""
    data = display_path(args.dataset_dir) if args.dataset_dir else "phantoms"
    if args.overlay:
        data += " with overlay(s) " + ", ".join(args.overlay)
    starts = "cold and warm (shared supervised warm start)" if args.warm_start else "cold"
    header = (
        f"Schedule {args.schedule}, data {data}, starts {starts}; {describe_machine(torch.device('cpu'))}, "
        f"{args.jobs} run(s) at a time{threads_note}; "
        f"command: {display_command('benchmarks/accuracy.py', sys.argv[1:] if argv is None else argv)}"
    )
    if args.report_only:
        rows = read_csv(csv_path)
        if md_path.is_file():  # keep the header of the run that measured the rows
            header = md_path.read_text().splitlines()[0]
    else:
        runs = plan(args)
        todo = [run for run in runs if not _finished(run)]
        eta, unknown = estimate_seconds(todo, _saved_rows(runs), args.jobs)
        print(
            f"{len(runs)} runs ({len(runs) - len(todo)} finished earlier, reused); estimate {eta / 60:.0f} min wall "
            f"at {args.jobs} at a time"
            + (f" + {unknown} run(s) of unknown length" if unknown else "")
            + f"; load {load_average()}",
            flush=True,
        )
        if args.dry_run:
            for run in runs:
                state = "reused" if run not in todo else "to run"
                print(f"  {run.bundle}/{run.label} f={run.fraction:g} seed={run.seed}: {state}")
            return 0
        prepare_data(runs)
        rows, failures, wall = _run_all(runs, args.jobs, csv_path)
        header += f"; {wall:.0f} s wall for {len(rows)} runs, load at the end {load_average()}"
        if failures:
            header += f"; {len(failures)} run(s) failed (logs in the run folders): " + ", ".join(failures)
    rows.sort(
        key=lambda r: (
            str(r["bundle"]),
            _number(r["fraction"]),
            str(r.get("start") or COLD),
            str(r["method"]),
            int(_number(r["seed"])),
        )
    )
    write_csv(rows, csv_path)
    md_path.write_text(markdown(rows, header) + "\n")
    plot(rows, png_path, header)
    written = [csv_path, md_path, png_path]
    for bundle in sorted({str(r["bundle"]) for r in rows}):
        written.append(args.output / f"accuracy_{bundle}.png")
        plot_bundle(rows, bundle, written[-1], header)
    print(md_path.read_text())
    print("written: " + ", ".join(str(p) for p in written))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
