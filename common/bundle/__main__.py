"""Command line of the bundle tools: ``python -m common.bundle <command> ...``.

Commands:
    export            write a self-contained, zoo-shaped copy of a trained bundle and its zip
    model_info        regenerate (or ``--check``) the collection index ``bundles/model_info.json``
    rank_uncertainty  rank inference cases by their saved uncertainty maps, most uncertain first, as CSV
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .export import ExportError, export_bundle
from .model_info import check_index, default_index_file, update_index, zoo_name_of
from .uncertainty import rank_by_uncertainty, write_ranking

__all__ = ["main"]


def _name_pairs(values: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        folder, sep, name = value.partition("=")
        if not sep or not folder or not name:
            raise SystemExit(f"--name takes <bundle folder name>=<zoo name>, got {value!r}")
        pairs[Path(folder).name] = name
    return pairs


def _export(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle)
    if not (bundle / "configs" / "metadata.json").is_file():
        raise ExportError(f"{bundle} is not a bundle folder (no configs/metadata.json)")
    zoo_name = args.name or zoo_name_of(bundle)
    result = export_bundle(bundle, args.out, zoo_name)
    print(f"exported {bundle} as {result.folder} and {result.zip_file} in {result.seconds:.1f} s")
    print(f"sha1 {result.checksum}  (recorded in {Path(args.out) / 'model_info.json'})")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    index_file = Path(args.index) if args.index else default_index_file()
    if args.check:
        problems = []
        for bundle in args.bundles or [None]:
            problems += check_index(bundle, index_file)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{index_file} is up to date")
        return 1 if problems else 0
    index = update_index(args.bundles or None, _name_pairs(args.name), index_file)
    for key, entry in index.items():
        print(f"{key}: {entry['folder']}  sha1 {entry['checksum']}")
    print(f"wrote {index_file}")
    return 0


def _rank(args: argparse.Namespace) -> int:
    ranking = rank_by_uncertainty(args.output_dir, args.postfix)
    csv_file = Path(args.csv) if args.csv else Path(args.output_dir) / "uncertainty_ranking.csv"
    write_ranking(ranking, csv_file, args.num_classes)
    for rank, case in enumerate(ranking[: args.show], start=1):
        print(f"{rank:4d}  {case.mean_entropy:.4f}  {case.case}")
    print(f"wrote {csv_file} ({len(ranking)} cases, most uncertain first)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit status (errors of the tools print one line and return 1)."""
    parser = argparse.ArgumentParser(prog="python -m common.bundle", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="self-contained, zoo-shaped copy of a trained bundle, and its zip")
    export.add_argument("bundle", help="the bundle folder, e.g. bundles/cmunext")
    export.add_argument("--out", default="dist", help="output folder (default: dist)")
    export.add_argument("--name", help="model-zoo name (default: the one in bundles/model_info.json)")
    export.set_defaults(run=_export)

    info = commands.add_parser("model_info", help="regenerate or check bundles/model_info.json")
    info.add_argument("bundles", nargs="*", help="bundle folders (default: every bundle)")
    info.add_argument("--check", action="store_true", help="only check; exit 1 when the index is stale")
    info.add_argument("--name", action="append", default=[], help="<folder>=<zoo name> for a new bundle or a rename")
    info.add_argument("--index", help="the index file (default: bundles/model_info.json)")
    info.set_defaults(run=_model_info)

    rank = commands.add_parser("rank_uncertainty", help="rank inference cases by saved uncertainty maps, as CSV")
    rank.add_argument("output_dir", help="the inference output folder holding *_<postfix>.* maps")
    rank.add_argument("--postfix", default="uncertainty", help="uncertainty_postfix of inference.json")
    rank.add_argument("--csv", help="CSV to write (default: <output_dir>/uncertainty_ranking.csv)")
    rank.add_argument("--num_classes", type=int, help="adds a column normalised by ln(num_classes)")
    rank.add_argument("--show", type=int, default=10, help="print the top N (default 10)")
    rank.set_defaults(run=_rank)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ExportError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
