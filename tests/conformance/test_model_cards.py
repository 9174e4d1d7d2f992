"""Every model card's description of its quick run follows its ``quick.json``: cases, size, batch, schedule.

Each card states the quick run in one sentence that starts with ``Quick run (`configs/quick.json`):`` and names the
phantom's number of cases, the image or patch size, the batch and the schedule (epochs, or iterations with their
epochs). The numbers are parsed from the card and compared with ``train.json`` + ``quick.json`` as the runner merges
them; any other line of the card that describes ``quick.json`` may not name another number of phantom cases or of
epochs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.parent.parent for p in (ROOT / "bundles").glob("*/configs/quick.json"))
SENTENCE = "Quick run (`configs/quick.json`):"


def quick_config(bundle: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "train.json"), str(bundle / "configs" / "quick.json")])
    return parser


def expected(bundle: Path) -> dict[str, object]:
    """The quick run's numbers, from the merged raw configs (nothing is built)."""
    config = quick_config(bundle)
    size = config.get("image_size") or config.get("patch_size")
    numbers: dict[str, object] = {
        "cases": int(config["phantom"]["num_cases"]),
        "size": "x".join(str(int(n)) for n in size),
        "batch": int(config["batch_size"]),
    }
    if config.get("max_iterations") is not None:
        numbers["iterations"] = int(config["max_iterations"])
        numbers["epochs_of"] = (
            math.ceil(int(config["max_iterations"]) / int(config["epoch_length"])),
            int(config["epoch_length"]),
        )
    elif config.get("epoch_length") is not None:
        numbers["epochs_of"] = (int(config["epochs"]), int(config["epoch_length"]))
    else:
        numbers["epochs"] = int(config["epochs"])
    return numbers


def stated(sentence: str) -> dict[str, object]:
    """The numbers a card's quick sentence states (the keys that :func:`expected` may produce)."""
    numbers: dict[str, object] = {}
    if m := re.search(r"(\d+)-case phantom", sentence):
        numbers["cases"] = int(m.group(1))
    if m := re.search(r"\b(\d+(?:x\d+)+)\b", sentence):
        numbers["size"] = m.group(1)
    if m := re.search(r"batch (\d+)", sentence):
        numbers["batch"] = int(m.group(1))
    if m := re.search(r"(\d+) epochs of (\d+)", sentence):
        numbers["epochs_of"] = (int(m.group(1)), int(m.group(2)))
    elif m := re.search(r"(\d+) epochs", sentence):
        numbers["epochs"] = int(m.group(1))
    if m := re.search(r"(\d+) iterations \(", sentence):
        numbers["iterations"] = int(m.group(1))
    return numbers


def card_sentence(bundle: Path) -> str:
    lines = [line for line in (bundle / "docs" / "README.md").read_text().splitlines() if SENTENCE in line]
    assert len(lines) == 1, f"{bundle.name}: the model card needs one line with {SENTENCE!r}"
    return lines[0].split(SENTENCE, 1)[1].split(". ", 1)[0]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_card_quick_sentence_follows_quick_json(bundle: Path) -> None:
    assert stated(card_sentence(bundle)) == expected(bundle)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_no_other_line_about_quick_json_contradicts_it(bundle: Path) -> None:
    numbers = expected(bundle)
    epochs = numbers["epochs"] if "epochs" in numbers else numbers["epochs_of"][0]  # type: ignore[index]
    for line in (bundle / "docs" / "README.md").read_text().splitlines():
        # benchmark.json and the 2D ISIC quick config are other schedules, described as such
        if "quick.json" not in line or "benchmark.json" in line or "quick_isic2018" in line:
            continue
        for cases in re.findall(r"(\d+)-(?:case|image|volume) phantom|phantom of (\d+)", line):
            assert int(next(c for c in cases if c)) == numbers["cases"], line
        for found in re.findall(r"\b(\d+) epochs\b", line):
            assert int(found) == epochs, line


def test_the_parser_reads_what_a_wrong_card_says() -> None:
    # the old cmunext card: it must not pass for the 100-case, 6-epoch quick.json
    old = " the same method on a 40-case phantom at 128x128, batch 4, for 12 epochs"
    assert stated(old) == {"cases": 40, "size": "128x128", "batch": 4, "epochs": 12}
    assert stated(old) != expected(ROOT / "bundles" / "cmunext")
