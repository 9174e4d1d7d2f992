"""Accuracy on equal terms: every semi-supervised bundle against its supervised-only baseline.

For each semi-supervised bundle (a bundle joins by having ``configs/supervised.json``, its supervised-only baseline
on the same network), each labeled fraction and each seed, this trains the method and the baseline through the
bundle runner (``python -m monai.bundle run training``), with the same data, the same split (the ``seed`` key
fixes it), the same labeled cases and the same network, then evaluates both on the test split with the bundle's
``evaluate.json``. It writes, under ``--output`` (default ``benchmarks/results``):

* ``accuracy.csv``: one row per run (bundle, method, fraction, labeled cases, seed, every test metric, seconds);
* ``accuracy.md``: mean +- sample standard deviation over seeds per bundle, method and fraction;
* ``accuracy.png``: test Dice per labeled fraction, method against baseline, every seed shown.

Schedules:

* ``reduced`` (default): ``train.json`` + ``quick.json`` + ``benchmark.json`` when the bundle has one (a smaller
  network and a few hundred iterations on a phantom, sized so that the whole benchmark runs in under an hour on a
  CPU), + ``supervised.json`` for the baseline.
* ``paper``: ``train.json`` (+ ``supervised.json``): the paper's recipe, meant for a GPU and the real data set.

Usage (from the repository root)::

    python benchmarks/accuracy.py                                    # phantoms, reduced schedule, CPU
    python benchmarks/accuracy.py --jobs 2                           # two runs at a time, one core each
    python benchmarks/accuracy.py --bundles ugmcl --fractions 8 16 --seeds 0 1 2 \\
        --schedule paper --dataset_dir /data/LA2018                 # the LA protocol (8 and 16 labeled), on a GPU
    python benchmarks/accuracy.py --report_only                      # table and plot again from accuracy.csv

Runs whose test metrics already exist are not repeated (delete ``<output>/accuracy/runs`` to start afresh).
"""

from __future__ import annotations

import argparse
import csv
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

BASELINE = "supervised"
LABELED_KEYS = ("labeled_fraction", "labeled_count", "labeled")  # the first a bundle's train.json has is used
PRIMARY_METRIC = "test_mean_dice"
MISSED_SUFFIX = "_missed"  # the evaluate handlers' count of missed cases (common.handlers.distances.MISSED_SUFFIX)
DISTANCE_METRICS = ("_hd95", "_asd")  # metrics whose missed cases the tables count
NUM_OVERLAYS = 2  # overlay PNGs per evaluated run


@dataclass
class Run:
    """One training + evaluation: a bundle's method or baseline at one labeled fraction and seed."""

    bundle: str
    method: str
    fraction: float
    seed: int
    configs: list[str]
    overrides: dict[str, object] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(str(self.overrides["output_dir"])).parent

    @property
    def metrics_file(self) -> Path:
        return self.folder / "eval" / "evaluate" / "metrics.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="*", default=None, help="bundles (default: all with supervised.json)")
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[0.125, 0.25], help="labeled fractions (< 1) or counts (>= 1)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split and initialisation seeds")
    parser.add_argument("--schedule", choices=("reduced", "paper"), default="reduced")
    parser.add_argument("--dataset_dir", default=None, help="a real data set (default: each bundle's phantom)")
    parser.add_argument("--dataset_layout", default=None, help="its layout, when not the bundle's default")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="any config id, all runs")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each then keeps to one CPU thread)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--report_only", action="store_true", help="only remake table and plot from the CSV")
    return parser.parse_args(argv)


def labeled_key(bundle: str) -> str:
    """The top-level id through which a bundle takes its labeled budget (a count or a fraction)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(bundle, ["train"]))
    for key in LABELED_KEYS:
        if key in parser:
            return key
    raise KeyError(f"bundle {bundle}: train.json has none of {LABELED_KEYS}, so its labeled budget cannot be set")


def plan(args: argparse.Namespace) -> list[Run]:
    """Every run of the benchmark, methods and baselines interleaved so that a cut-short run still pairs them."""
    bundles = args.bundles if args.bundles else bundles_with(BASELINE, "evaluate")
    work = args.output / "accuracy"
    extra = dict(item.split("=", 1) for item in args.override)
    runs = []
    for bundle in bundles:
        key = labeled_key(bundle)
        base = ["train", "quick", "benchmark"] if args.schedule == "reduced" else ["train"]
        for fraction in args.fractions:
            for seed in args.seeds:
                for method in (bundle, BASELINE):
                    names = base + ([BASELINE] if method == BASELINE else [])
                    folder = work / "runs" / bundle / f"{method}_f{fraction:g}_s{seed}"
                    overrides: dict[str, object] = {
                        "seed": seed,
                        key: int(fraction) if fraction >= 1 else fraction,  # a whole number >= 1: a count of cases
                        "ckpt_dir": str(folder / "models"),
                        "output_dir": str(folder / "eval"),
                        "resume": False,
                        "progress_bar": False,
                    }
                    if args.dataset_dir:
                        overrides["dataset_dir"] = args.dataset_dir
                    else:  # one phantom per bundle and schedule, outside the source tree, shared by all its runs
                        overrides["phantom_dir"] = str(work / "data" / f"{bundle}_{args.schedule}")
                    if args.dataset_layout:
                        overrides["dataset_layout"] = args.dataset_layout
                    overrides.update(extra)
                    configs = config_files(bundle, names, optional=["benchmark"])
                    runs.append(Run(bundle, method, fraction, seed, configs, overrides))
    return runs


def prepare_data(runs: list[Run]) -> None:
    """Write each bundle's phantom once, before parallel runs could race to write it."""
    from monai.bundle import ConfigParser

    done = set()
    for run in runs:
        where = run.overrides.get("phantom_dir")
        if where is None or where in done:
            continue
        parser = ConfigParser()
        parser.read_config(run.configs)
        parser.update({k: v for k, v in run.overrides.items()})
        parser["output_dir"] = str(Path(str(where)).parent / f"{Path(str(where)).name}_split")
        parser.get_parsed_content("datalist")
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


def execute(run: Run, threads: int | None) -> dict[str, object]:
    """Train and evaluate one run and return its CSV row; a run already scored returns its saved row."""
    cached = run.folder / "row.json"
    if run.metrics_file.is_file() and cached.is_file():
        return json.loads(cached.read_text())
    started = load_average()
    train_s = eval_s = float("nan")
    if not run.metrics_file.is_file():
        train_cmd = monai_bundle_command("training", run.configs, run.overrides)
        train_s = run_logged(train_cmd, run.folder / "train.log", threads)
        eval_configs = run.configs + config_files(run.bundle, ["evaluate"])
        eval_cmd = monai_bundle_command(None, eval_configs, {**run.overrides, "num_overlays": NUM_OVERLAYS})
        eval_s = run_logged(eval_cmd, run.folder / "eval.log", threads)
    row: dict[str, object] = {
        "bundle": run.bundle,
        "method": run.method,
        "fraction": run.fraction,
        "labeled": labeled_cases(run),
        "seed": run.seed,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "load_start": started,
        "load_end": load_average(),
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


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def summarise(rows: list[dict[str, object]]) -> dict[tuple[str, float, str], dict[str, tuple[float, float, int]]]:
    """``{(bundle, fraction, method): {metric: (mean, std, n)}}`` over seeds, ``n`` the runs with a finite value.

    A ``<metric>_missed`` column (the evaluate handlers' count of test cases whose prediction or truth is empty while
    the other is not, see ``common.handlers.distances``) is summed over the seeds instead: ``(total, nan, runs)``.
    """
    groups: dict[tuple[str, float, str], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["bundle"]), _number(row["fraction"]), str(row["method"])), []).append(row)
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


def markdown(rows: list[dict[str, object]], header: str) -> str:
    """One table per bundle: mean +- std over seeds of every test metric, method beside its baseline."""
    summary = summarise(rows)
    lines = [header, ""]
    for bundle in sorted({k[0] for k in summary}):
        keys = sorted((k for k in summary if k[0] == bundle), key=lambda k: (k[1], k[2] == BASELINE))
        metrics = [m for m in summary[keys[0]] if m != "labeled" and not m.endswith(MISSED_SUFFIX)]
        distances = [m for m in metrics if m.endswith(DISTANCE_METRICS)]
        missed_columns = [f"{m} missed cases" for m in distances]
        lines += [
            f"**{bundle}** (mean ± std over seeds; the supervised baseline trains the same network on the labeled "
            "cases only)",
            "",
            "| labeled fraction | labeled cases | method | seeds | " + " | ".join(metrics + missed_columns) + " |",
            "|---|---|---|---|" + "---|" * (len(metrics) + len(missed_columns)),
        ]
        for key in keys:
            stats = summary[key]
            cells = [_cell(stats, m) for m in metrics] + [_missed_cell(stats, m) for m in distances]
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
        for fraction in sorted({k[1] for k in keys}):
            method, base = summary.get((bundle, fraction, bundle)), summary.get((bundle, fraction, BASELINE))
            if method and base and PRIMARY_METRIC in method and PRIMARY_METRIC in base:
                delta = method[PRIMARY_METRIC][0] - base[PRIMARY_METRIC][0]
                lines.append(f"- Dice, {bundle} minus baseline at fraction {fraction:g}: {delta:+.3f}")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    """Test Dice against the labeled fraction, one panel per bundle: method and baseline, mean +- std and seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows)
    bundles = sorted({k[0] for k in summary})
    fig, axes = plt.subplots(1, len(bundles), figsize=(5 * len(bundles), 4), squeeze=False)
    for ax, bundle in zip(axes[0], bundles):
        for offset, method in ((-0.004, bundle), (0.004, BASELINE)):
            keys = sorted(k for k in summary if k[0] == bundle and k[2] == method and PRIMARY_METRIC in summary[k])
            xs = [k[1] + offset for k in keys]
            means = [summary[k][PRIMARY_METRIC][0] for k in keys]
            stds = [summary[k][PRIMARY_METRIC][1] for k in keys]
            line = ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=method)
            seeds = [r for r in rows if r["bundle"] == bundle and r["method"] == method]
            ax.scatter(
                [_number(r["fraction"]) + offset for r in seeds],
                [_number(r.get(PRIMARY_METRIC)) for r in seeds],
                s=12,
                alpha=0.5,
                color=line[0].get_color(),
            )
        ax.set_title(bundle)
        ax.set_xlabel("labeled fraction of the training cases")
        ax.set_ylabel("test Dice")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(textwrap.fill(title, 60 * len(bundles)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = (args.output / f"accuracy.{ext}" for ext in ("csv", "md", "png"))
    threads_note = ", one torch thread each" if args.jobs > 1 else ""
    data = display_path(args.dataset_dir) if args.dataset_dir else "phantoms"
    header = (
        f"Schedule {args.schedule}, data {data}; {describe_machine(torch.device('cpu'))}, "
        f"{args.jobs} run(s) at a time{threads_note}; "
        f"command: {display_command('benchmarks/accuracy.py', sys.argv[1:] if argv is None else argv)}"
    )
    if args.report_only:
        rows = read_csv(csv_path)
        if md_path.is_file():  # keep the header of the run that measured the rows
            header = md_path.read_text().splitlines()[0]
    else:
        runs = plan(args)
        print(f"{len(runs)} runs; load {load_average()}", flush=True)
        prepare_data(runs)
        threads = 1 if args.jobs > 1 else None
        rows, failures = [], []
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(execute, run, threads): run for run in runs}
            for future in as_completed(futures):
                run = futures[future]
                try:
                    row = future.result()
                except Exception as error:  # one failed run is reported; the others still count
                    failures.append(f"{run.bundle}/{run.method} f={run.fraction:g} seed={run.seed}")
                    print(f"{failures[-1]}: {error}", flush=True)
                    continue
                rows.append(row)
                write_csv(rows, csv_path)
                print(
                    f"[{len(rows)}/{len(runs)} {time.perf_counter() - start:.0f} s] {run.bundle}/{run.method} "
                    f"f={run.fraction:g} seed={run.seed}: Dice {_number(row.get(PRIMARY_METRIC)):.3f} "
                    f"(train {row['train_s']} s, load {row['load_end']})",
                    flush=True,
                )
        header += f"; {time.perf_counter() - start:.0f} s wall for {len(rows)} runs, load at the end {load_average()}"
        if failures:
            header += f"; {len(failures)} run(s) failed (logs in the run folders): " + ", ".join(failures)
    rows.sort(key=lambda r: (str(r["bundle"]), _number(r["fraction"]), str(r["method"]), int(_number(r["seed"]))))
    write_csv(rows, csv_path)
    md_path.write_text(markdown(rows, header) + "\n")
    plot(rows, png_path, header)
    print(md_path.read_text())
    print(f"written: {csv_path}, {md_path}, {png_path}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
