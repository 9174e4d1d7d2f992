"""Reports name no machine path: model cards, README tables and the benchmarks' own reports travel to other machines.

An exported bundle ships its model card; a README table is read on every clone. An absolute folder of the checkout
that measured a figure names one developer's machine there (and made ``test_export_runs_without_common`` fail for a
user whose checkout sits at that very path), and a temporary folder means nothing once the run has ended.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy  # noqa: E402
from _common import display_command, display_path  # noqa: E402

# an absolute path that leads into one of this repository's own top-level folders: a checkout's location, wherever
# that checkout is (``/home/x/repo/benchmarks/results``), so today's files are caught from any clone
CHECKOUT_PATH = re.compile(r"(?<![\w.<>-])(?:/[\w.+-]+)+/(?:benchmarks|bundles|common|tests|dist)(?=/|\b)")
TEMPORARY_PATH = re.compile(r"(?<![\w.<>-])(?:/tmp|/var/tmp|/var/folders|" + re.escape(tempfile.gettempdir()) + r")/")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        names = out.splitlines()
    except (OSError, subprocess.CalledProcessError):  # an exported copy without git: every file
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    suffixes = (".md", ".json", ".txt", ".conf", ".py", ".toml", ".sh", ".cfg")
    # a tracked file deleted in the working tree (not yet committed) has no text to check
    return [ROOT / n for n in names if n.endswith(suffixes) and (ROOT / n).is_file()]


def _report_lines(path: Path) -> list[tuple[int, str]]:
    """Lines of a markdown file that the benchmarks write: "Measured with ..." headers and table rows."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [(i + 1, line) for i, line in enumerate(lines) if line.startswith(("Measured with", "|"))]


def test_display_path_relative_inside_the_checkout_and_hides_temporary_folders(tmp_path: Path) -> None:
    assert display_path(ROOT / "benchmarks" / "results") == "benchmarks/results"
    assert display_path(ROOT) == "."
    assert display_path(tmp_path / "out") == f"<tmp>/{(tmp_path / 'out').relative_to(tempfile.gettempdir())}"
    assert display_path(tempfile.gettempdir()) == "<tmp>"
    assert display_path("/data/LA2018") == "/data/LA2018"  # the user's own data folder, as given


def test_display_command_rewrites_only_paths() -> None:
    cmd = display_command(
        "benchmarks/accuracy.py",
        ["--jobs", "2", f"--output={ROOT / 'benchmarks' / 'results'}", "--dataset_dir", "/data/my set", "--override"],
    )
    assert (
        cmd
        == "python benchmarks/accuracy.py --jobs 2 --output=benchmarks/results --dataset_dir '/data/my set' --override"
    )
    assert str(ROOT) not in display_command("benchmarks/speed.py", ["--output", str(ROOT / "x")])


def test_no_tracked_file_names_a_checkout_path() -> None:
    found = []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue  # this file spells the patterns out
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if str(ROOT) in line or CHECKOUT_PATH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:160]}")
    assert not found, "absolute checkout paths in tracked files:\n" + "\n".join(found)


def test_no_model_card_or_readme_table_names_a_temporary_folder() -> None:
    cards = [ROOT / "README.md", *sorted((ROOT / "bundles").glob("*/docs/README.md"))]
    found = [
        f"{card.relative_to(ROOT)}:{number}: {line[:160]}"
        for card in cards
        for number, line in _report_lines(card)
        if TEMPORARY_PATH.search(line) or str(ROOT) in line
    ]
    assert not found, "machine paths in reported figures:\n" + "\n".join(found)


@pytest.mark.parametrize("patterns", [(CHECKOUT_PATH, TEMPORARY_PATH)])
def test_patterns_catch_the_lines_that_were_published(patterns) -> None:
    """The lines pasted into README and two model cards before this test existed are caught."""
    old = "command: python benchmarks/accuracy.py --jobs 2 --output /work/main/benchmarks/results; 2118 s wall"
    assert patterns[0].search(old)
    assert patterns[1].search("command: python benchmarks/speed.py --output /tmp/pytest-of-root/speed")
    assert not patterns[0].search("command: python benchmarks/accuracy.py --jobs 2 --output benchmarks/results")
    assert not patterns[1].search("--output <tmp>/speed")


def test_accuracy_report_names_no_checkout_or_temporary_folder(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    row = {"bundle": "ugmcl", "method": "ugmcl", "fraction": "0.125", "labeled": "3", "seed": "0"}
    with open(out / "accuracy.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*row, "test_mean_dice"])
        writer.writeheader()
        writer.writerow({**row, "test_mean_dice": "0.5"})
    assert accuracy.main(["--report_only", "--output", str(out), "--dataset_dir", str(tmp_path / "data")]) == 0
    report = (out / "accuracy.md").read_text()
    assert "command: python benchmarks/accuracy.py --report_only --output <tmp>/" in report
    assert str(tmp_path) not in report and str(ROOT) not in report
    assert not CHECKOUT_PATH.search(report)
