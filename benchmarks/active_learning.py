"""Does uncertainty-guided annotation save labels? A simulated active-learning loop on a bundle's phantom.

Every seed draws the bundle's split (validation selects the checkpoint, the test split scores it, both as
``benchmarks/accuracy.py`` draws them) and a start of ``--initial`` labeled training cases; the other training
cases form the pool, whose labels the simulation hides until a case is "annotated". Then, round after round, for
the semi-supervised bundle and for its supervised baseline (``configs/supervised.json``, the same network on the
labeled cases only):

1. train through the bundle runner (``python -m monai.bundle run training``) on the labeled cases (the
   semi-supervised bundle also on the pool, its unlabeled cases) and score the best checkpoint on the test split
   with ``evaluate.json``; these are ``benchmarks/accuracy.py``'s runs (:class:`accuracy.Run`,
   :func:`accuracy.execute`), given the round's datalist instead of a labeled fraction;
2. add ``--per_round`` cases to the labeled set, chosen

   * ``uncertainty``: by the trained model itself: the bundle's inference with ``--save_uncertainty True`` on the
     pool (``--input_split unlabeled``) writes one entropy map per case, :func:`common.bundle.rank_by_uncertainty`
     ranks them by mean entropy, and the top cases are annotated (their labels revealed);
   * ``random``: uniformly from the pool (a draw that depends on the seed and the round only, so that the two
     methods annotate the same cases);

so that test Dice can be read against the number of labeled cases for both strategies. The first round is shared by
the two strategies. Written under ``--output`` (default ``benchmarks/results``):

* ``active_learning.csv``: one row per trained model (strategy, round, labeled cases, seed, test metrics, seconds);
* ``active_learning.md``: mean +- sample standard deviation over seeds per method, strategy and label count;
* ``active_learning.png``: test Dice against labeled cases, one panel per method, each strategy's mean +- std and
  every seed.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/active_learning.py                        # dfcps, reduced schedule, CPU
    OMP_NUM_THREADS=1 python benchmarks/active_learning.py --configs benchmark_calibrated --override epochs=4 \
        --initial 4 --per_round 8 --rounds 2 --seeds 0 1 2 --jobs 6             # the README's measurement
    python benchmarks/active_learning.py --report_only                            # table and plot again

``--configs`` layers more of the bundle's configs after ``train`` + ``quick`` + ``benchmark`` (a phantom, a schedule);
``--override`` sets config ids of every training. A chain (method, strategy, seed) runs its rounds in order as soon as
its previous round is done; ``--jobs`` chains run at a time, each run with one torch thread.

Runs already scored (and rankings already written) are reused: a cut-short invocation continues where it stopped
(delete ``<output>/active_learning`` to start afresh).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS, ROOT, config_files, display_command, load_average, monai_bundle_command, run_logged
from accuracy import BASELINE, PRIMARY_METRIC, Run, execute, mean_std, read_csv, write_csv
from timing import describe_machine

__all__ = ["STRATEGIES", "case_key", "choose_cases", "round_datalist"]

STRATEGIES = ("uncertainty", "random")
UNCERTAINTY_POSTFIX = "uncertainty"  # the bundles' inference.json "uncertainty_postfix"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="dfcps", help="a semi-supervised bundle with save_uncertainty")
    parser.add_argument("--initial", type=int, default=4, help="labeled cases of the first round")
    parser.add_argument("--per_round", type=int, default=4, help="cases annotated after each round")
    parser.add_argument("--rounds", type=int, default=3, help="trainings per strategy, the first one included")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split, start and training seeds")
    parser.add_argument("--methods", nargs="+", default=None, help="default: the bundle and its supervised baseline")
    parser.add_argument(
        "--configs",
        nargs="*",
        default=[],
        help="more overlays of the bundle's configs/ after train + quick + benchmark (e.g. a calibrated phantom)",
    )
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="any config id, all runs")
    parser.add_argument("--jobs", type=int, default=1, help="chains of rounds at a time (one CPU thread each)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--report_only", action="store_true", help="only remake table and plot from the CSV")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------- pure selection logic
def case_key(entry: Mapping[str, Any]) -> str:
    """The name under which inference writes a case's maps: its image file name without the extension.

    Args:
        entry: a datalist entry with ``"image"`` (a path).

    Returns:
        ``"case_007"`` for ``".../images/case_007.jpg"`` (``".nii.gz"`` counts as one extension).
    """
    name = Path(str(entry["image"])).name
    for ext in (".nii.gz", ".nrrd.gz"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def choose_cases(
    pool: Sequence[str], count: int, strategy: str, ranking: Sequence[str] | None = None, seed: int = 0, round_: int = 0
) -> list[str]:
    """The pool cases to annotate next.

    Args:
        pool: the ids of the unlabeled training cases.
        count: how many to annotate (all of the pool when it has fewer).
        strategy: ``"uncertainty"``: the first ``count`` of ``ranking`` that are in the pool (most uncertain first);
            ``"random"``: a uniform draw without replacement, from the pool sorted by id with a generator seeded by
            ``(seed, round_)``, so the draw depends neither on the pool's order nor on the method.
        ranking: case ids, most uncertain first (``"uncertainty"`` only); ids outside the pool are skipped.
        seed: the run's seed (``"random"``).
        round_: the round (``"random"``).

    Returns:
        the chosen ids, in the order chosen.

    Raises:
        ValueError: an unknown strategy, a negative count, no ranking for ``"uncertainty"``, or a ranking that
            leaves out pool cases (each pool case must have been scored, else the choice would be silently biased).
    """
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    count = min(count, len(pool))
    if strategy == "random":
        order = sorted(pool)
        picks = np.random.default_rng([int(seed), int(round_)]).choice(len(order), size=count, replace=False)
        return [order[i] for i in picks]
    if strategy != "uncertainty":
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if ranking is None:
        raise ValueError("the uncertainty strategy needs a ranking")
    members = set(pool)
    scored = [case for case in ranking if case in members]
    unscored = sorted(members - set(scored))
    if unscored:
        raise ValueError(f"{len(unscored)} pool case(s) have no uncertainty score, e.g. {unscored[:3]}")
    return scored[:count]


def round_datalist(full: Mapping[str, list[dict]], labeled: Sequence[str]) -> dict[str, list[dict]]:
    """A round's datalist: the labeled ids with their labels, the rest of the training cases without.

    Args:
        full: the split with every training case labeled (``"training"``, ``"validation"``, ``"test"``, ...).
        labeled: the ids annotated so far.

    Returns:
        ``full`` with ``"training"`` holding the labeled cases and ``"unlabeled"`` the others (no ``"label"`` key),
        both sorted by id as :func:`common.data.split_cases` sorts them.

    Raises:
        KeyError: a labeled id that is not a training case.
    """
    by_id = {str(case["id"]): case for case in full["training"] + full.get("unlabeled", [])}
    missing = sorted(set(labeled) - set(by_id))
    if missing:
        raise KeyError(f"labeled ids that are not training cases: {missing[:5]}")
    chosen = set(labeled)
    out = {key: [dict(case) for case in value] if isinstance(value, list) else value for key, value in full.items()}
    out["training"] = [dict(by_id[i]) for i in sorted(chosen)]
    out["unlabeled"] = [{k: v for k, v in by_id[i].items() if k != "label"} for i in sorted(set(by_id) - chosen)]
    return out


# --------------------------------------------------------------------------------------------------- the runs
class Simulation:
    """The runs of one invocation: datalists per seed, trainings per (method, strategy, round), pool rankings."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bundle = args.bundle
        self.methods = args.methods or [self.bundle, BASELINE]
        self.work = args.output / "active_learning"
        self.base = ["train", "quick", "benchmark", *args.configs]
        self.phantom_dir = self.work / "data" / "_".join([self.bundle, "reduced", *args.configs])
        self.extra = dict(item.split("=", 1) for item in args.override)
        self._locks: dict[Path, threading.Lock] = {}
        # runs are reused by folder: a folder trained with other settings must not be mixed in (rounds and seeds
        # may grow between invocations; everything else fixes what a run is)
        settings = {k: getattr(args, k) for k in ("bundle", "configs", "override", "initial", "per_round")}
        record = self.work / "settings.json"
        if record.is_file() and json.loads(record.read_text()) != settings:
            raise RuntimeError(
                f"{self.work} holds runs of other settings ({record.read_text().strip()}): use another --output"
            )
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(settings))
        self._guard = threading.Lock()

    def _lock(self, folder: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(folder, threading.Lock())

    def full_split(self, seed: int) -> dict[str, list[dict]]:
        """The bundle's split for ``seed`` with every training case labeled (the simulation's oracle)."""
        from common.data import load_datalist  # after __main__ put this checkout first on the path

        path = self.work / "splits" / f"s{seed}_full.json"
        if not path.is_file():
            from monai.bundle import ConfigParser

            parser = ConfigParser()
            parser.read_config(config_files(self.bundle, self.base, optional=["benchmark"]))
            parser.update({"seed": seed, "phantom_dir": str(self.phantom_dir), **self.extra})
            parser["labeled_fraction"] = None  # split_cases: None = every training case labeled
            parser["datalist_file"] = str(path)
            parser.get_parsed_content("datalist")
        return load_datalist(path)

    def initial(self, seed: int) -> list[str]:
        """The first labeled cases: the bundle's own draw of ``--initial`` labeled cases for this seed."""
        from common.data import load_datalist

        path = self.work / "splits" / f"s{seed}_initial{self.args.initial}.json"
        if not path.is_file():
            from monai.bundle import ConfigParser

            parser = ConfigParser()
            parser.read_config(config_files(self.bundle, self.base, optional=["benchmark"]))
            parser.update({"seed": seed, "phantom_dir": str(self.phantom_dir), **self.extra})
            parser["labeled_fraction"] = self.args.initial
            parser["datalist_file"] = str(path)
            parser.get_parsed_content("datalist")
        return [str(case["id"]) for case in load_datalist(path)["training"]]

    def folder(self, method: str, strategy: str, seed: int, round_: int) -> Path:
        # the first round's training is the same for both strategies
        name = "start" if round_ == 0 else strategy
        return self.work / "runs" / self.bundle / f"{method}_{name}_r{round_}_s{seed}"

    def run_for(self, method: str, strategy: str, seed: int, round_: int, labeled: list[str]) -> Run:
        """The accuracy benchmark's run, fed this round's datalist (written to ``eval/datalist.json``)."""
        from common.data import load_datalist, save_datalist

        folder = self.folder(method, strategy, seed, round_)
        datalist_file = folder / "eval" / "datalist.json"
        datalist_file.parent.mkdir(parents=True, exist_ok=True)
        datalist = round_datalist(self.full_split(seed), labeled)
        if datalist_file.is_file():
            if load_datalist(datalist_file) != datalist:
                raise RuntimeError(f"{datalist_file} holds another datalist: delete {folder} to redo this run")
        else:
            save_datalist(datalist, datalist_file)
        names = self.base + ([BASELINE] if method == BASELINE else [])
        overrides: dict[str, object] = {
            "seed": seed,
            "phantom_dir": str(self.phantom_dir),
            # the round's datalist replaces the bundle's split: same cases, but the labeled ones chosen by the loop
            "datalist": f"$common.data.load_datalist({str(datalist_file)!r})",
            "ckpt_dir": str(folder / "models"),
            "output_dir": str(folder / "eval"),
            "resume": False,
            "progress_bar": False,
            **self.extra,
        }
        configs = config_files(self.bundle, names, optional=["benchmark"])
        return Run(self.bundle, method, float(len(labeled)), seed, configs, overrides)

    def rank_pool(self, run: Run, method: str) -> list[str]:
        """Case ids of the run's pool, most uncertain first, from the bundle's own inference with uncertainty."""
        from common.bundle.uncertainty import rank_by_uncertainty, write_ranking

        out = run.folder / "pool_uncertainty"
        csv_file = out / "uncertainty_ranking.csv"
        if not csv_file.is_file():
            configs = config_files(self.bundle, ["inference", "quick", "benchmark"], optional=["benchmark"])
            # the network's shape comes from quick + benchmark; the other overlays (data, schedule) are not inference's
            overrides: dict[str, object] = {
                "ckpt_dir": str(run.folder / "models"),
                "output_dir": str(out),
                "dataset_dir": "",
                "training_datalist": str(run.folder / "eval" / "datalist.json"),
                "input_split": "unlabeled",
                "save_uncertainty": True,
            }
            if method == BASELINE:  # the baseline's checkpoint holds one network (supervised.json)
                overrides["network_def#networks"] = ["%member_def"]
            overrides.update({k: v for k, v in self.extra.items() if k not in ("epochs", "epoch_length")})
            run_logged(monai_bundle_command(None, configs, overrides), run.folder / "infer.log", self.threads)
            write_ranking(rank_by_uncertainty(out, UNCERTAINTY_POSTFIX), csv_file)
        ranking = read_csv(csv_file)
        return [str(row["case"]) for row in ranking]

    @property
    def threads(self) -> int:
        return 1  # one torch thread per run: the machine is shared, and parallel chains keep to a core each

    def step(self, method: str, strategy: str, seed: int, round_: int, labeled: list[str]) -> tuple[dict, list[str]]:
        """One round of one chain: train and score on ``labeled``, then choose the next cases.

        Returns:
            the round's row and the labeled ids of the next round (``labeled`` itself after the last round).
        """
        run = self.run_for(method, strategy, seed, round_, labeled)
        started = time.perf_counter()
        with self._lock(run.folder):  # the first round is shared by both strategies' chains
            row = dict(execute(run, self.threads))
        row.update(strategy="start" if round_ == 0 else strategy, round=round_, labeled=len(labeled))
        print(
            f"[{time.strftime('%H:%M:%S')}] {method} {strategy} seed {seed} round {round_}: "
            f"{len(labeled)} labeled, test Dice {float(row.get(PRIMARY_METRIC, 'nan')):.3f} "
            f"({time.perf_counter() - started:.0f} s, load {load_average()})",
            flush=True,
        )
        if round_ == self.args.rounds - 1:
            return row, labeled
        full = self.full_split(seed)
        keys = {str(case["id"]): case_key(case) for case in full["training"]}
        pool = sorted(set(keys) - set(labeled))
        ranking = None
        if strategy == "uncertainty":
            ids_by_key = {v: k for k, v in keys.items()}
            with self._lock(run.folder):
                ranking = [ids_by_key[k] for k in self.rank_pool(run, method)]
        return row, labeled + choose_cases(pool, self.args.per_round, strategy, ranking, seed, round_)


# --------------------------------------------------------------------------------------------------- reporting
def summarise(rows: list[dict[str, object]]) -> dict[tuple[str, str, int], tuple[float, float, int]]:
    """``{(method, strategy, labeled): (mean, std, n)}`` of test Dice over seeds; the shared first round counts for
    both strategies."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for row in rows:
        strategies = STRATEGIES if str(row["strategy"]) == "start" else (str(row["strategy"]),)
        for strategy in strategies:
            key = (str(row["method"]), strategy, int(float(row["labeled"])))
            groups.setdefault(key, []).append(float(row.get(PRIMARY_METRIC) or "nan"))
    return {key: (*mean_std(values), len(values)) for key, values in groups.items()}


def unique_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per trained model (the shared first round appears in both chains)."""
    seen, out = set(), []
    for row in rows:
        key = (row["method"], row["seed"], row["round"], row["strategy"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def markdown(rows: list[dict[str, object]], header: str) -> str:
    summary = summarise(rows)
    lines = [
        header,
        "",
        f"| method | labeled cases | {' | '.join(STRATEGIES)} | uncertainty minus random |",
        "|---|---|---|---|---|",
    ]
    for method in sorted({k[0] for k in summary}, key=lambda m: m == BASELINE):
        for count in sorted({k[2] for k in summary if k[0] == method}):
            cells, means = [], []
            for strategy in STRATEGIES:
                stats = summary.get((method, strategy, count))
                cells.append(f"{stats[0]:.3f} ± {stats[1]:.3f} ({stats[2]})" if stats else "")
                means.append(stats[0] if stats else float("nan"))
            lines.append(f"| {method} | {count} | {' | '.join(cells)} | {means[0] - means[1]:+.3f} |")
    lines += [
        "",
        "Test Dice, mean ± sample std over seeds (number of seeds); the first row of each method is the shared start.",
    ]
    return "\n".join(lines)


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows)
    if not summary:
        return
    methods = sorted({k[0] for k in summary}, key=lambda m: m == BASELINE)
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        for offset, strategy in ((-0.1, "uncertainty"), (0.1, "random")):
            keys = sorted(k for k in summary if k[0] == method and k[1] == strategy)
            xs = [k[2] + offset for k in keys]
            line = ax.errorbar(
                xs,
                [summary[k][0] for k in keys],
                yerr=[summary[k][1] for k in keys],
                marker="o",
                capsize=4,
                label=strategy,
            )
            seeds = [r for r in rows if r["method"] == method and r["strategy"] in (strategy, "start")]
            ax.scatter(
                [int(float(r["labeled"])) + offset for r in seeds],
                [float(r.get(PRIMARY_METRIC) or "nan") for r in seeds],
                s=12,
                alpha=0.5,
                color=line[0].get_color(),
            )
        ax.set_title(method if method != BASELINE else "supervised baseline")
        ax.set_xlabel("labeled training cases")
        ax.set_ylabel("test Dice")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(textwrap.fill(title, 70 * len(methods)), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = (args.output / f"active_learning.{ext}" for ext in ("csv", "md", "png"))
    header = (
        f"Active learning on the {args.bundle} phantom, reduced schedule"
        f"{' + ' + ' + '.join(args.configs) if args.configs else ''}: {args.initial} labeled to start, "
        f"+{args.per_round} per round, {args.rounds} rounds, seeds {' '.join(map(str, args.seeds))}; "
        f"{describe_machine(torch.device('cpu'))}, {args.jobs} chain(s) at a time, one torch thread each; "
        f"command: {display_command('benchmarks/active_learning.py', sys.argv[1:] if argv is None else argv)}"
    )
    if args.report_only:
        rows = read_csv(csv_path)
        if md_path.is_file():
            header = md_path.read_text().splitlines()[0]
    else:
        simulation = Simulation(args)
        for seed in args.seeds:  # splits first, before parallel chains could race to write the phantom
            simulation.full_split(seed)
            simulation.initial(seed)
        # every chain runs its rounds in order, as soon as its previous round is done (the first round is shared
        # by the two strategies of a seed and method, and run once); the uncertainty chains come first
        chains = [(m, s, seed) for s in STRATEGIES for seed in args.seeds for m in simulation.methods]
        print(f"{len(chains)} chains of {args.rounds} rounds; load {load_average()}", flush=True)
        start, rows, failures = time.perf_counter(), [], []

        def run_chain(method: str, strategy: str, seed: int) -> list[dict[str, object]]:
            labeled, done = simulation.initial(seed), []
            for round_ in range(args.rounds):
                row, labeled = simulation.step(method, strategy, seed, round_, labeled)
                done.append(row)
                with lock:  # the CSV keeps what is finished, should the invocation be cut short
                    rows.append(row)
                    write_csv(unique_rows(rows), csv_path)
            return done

        lock = threading.Lock()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_chain, *chain): chain for chain in chains}
            for future in as_completed(futures):
                try:
                    future.result()
                except Exception as error:  # a failed chain stops; the others go on
                    failures.append("/".join(map(str, futures[future])))
                    print(f"{failures[-1]}: {error}", flush=True)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        header += (
            f"; {time.perf_counter() - start:.0f} s wall, {cpu.ru_utime + cpu.ru_stime:.0f} s CPU of the runs "
            f"(this invocation; reused runs not counted), load at the end {load_average()}"
        )
        if failures:
            header += f"; {len(failures)} chain(s) failed: " + ", ".join(failures)
        rows = unique_rows(rows)
    rows.sort(key=lambda r: (str(r["method"]), int(float(r["seed"])), int(float(r["round"])), str(r["strategy"])))
    write_csv(rows, csv_path)
    md_path.write_text(markdown(rows, header) + "\n")
    plot(rows, png_path, header)
    print(md_path.read_text())
    print(f"written: {csv_path}, {md_path}, {png_path}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
