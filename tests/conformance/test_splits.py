"""Conformance: every bundle, with every layout it reads, holds out a test split that nothing else sees.

A bundle joins by existing (``bundles/<name>/configs/metadata.json``). For each bundle this builds the datalist the
way its configs do (the ``datalist`` expression of ``train.json``, with ``dataset_dir`` and ``dataset_layout``
overridden) on tiny hand-built fixtures in the exact public layouts, and checks:

- ``test`` is non-empty and shares no case with ``validation``, ``training`` or ``unlabeled``;
- where the fixture has an official test set (ISIC's test folders, LA's ``test.list``, nnU-Net's ``imagesTs/``, a
  ``test.txt``, LiTS's ``test_num.txt``), ``test`` is exactly that set; otherwise the splitter drew one;
- the datalist file on disk holds the same test cases;
- training selects its checkpoint on ``validation`` (not on ``test``), and ``evaluate.json`` scores ``test`` only.

Config stacks: ``train.json`` alone; ``train.json`` + each layered config that sets a split key (a data set config
such as ``la.json``, ``brats2019.json``; ``quick.json`` always, whose small phantoms must still leave a test case);
``train`` + ``quick`` + ``benchmark`` (the accuracy benchmark's reduced schedule); ``train`` + ``<base>`` + ``quick``
+ ``quick_<base>`` where a ``quick_<base>.json`` exists. Each stack is checked on every fixture of its spatial
dimension (a user may pass any such ``--dataset_layout``, as the real-data runs of the accuracy benchmark do), and
on a stand-in of its own phantom (tiny images, the stack's ``num_cases``, the layout's phantom split files).

A labeled-case count larger than a tiny fixture holds is lowered to 2: the splitter draws test and validation before
the labeled cases and independently of their number (``tests/data/test_datalist.py`` pins that).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser
from PIL import Image

from common.data import LAYOUTS, get_layout, load_datalist

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.name for p in (ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
NOT_TRAINING = {"train", "inference", "metadata", "multi_gpu_train"}
SPLIT_KEYS = {
    "dataset_dir",
    "dataset_layout",
    "phantom_dir",
    "phantom",
    "seed",
    "val_fraction",
    "test_fraction",
    "use_official_split",
    "validation_from_test",
    "datalist",
    "datalist_file",
}
LABELED_COUNT_KEYS = ("labeled_count", "labeled")
SMALL_LABELED_COUNT = 2
LISTS = ("training", "unlabeled", "validation", "test")


# ----------------------------------------------------------------------------------------------- fixture writers
def save_rgb(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (value, value // 2, value // 3)).save(path)


def save_mask(path: Path, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((10, 12), np.uint8)
    mask[2:6, 3:8] = 255
    Image.fromarray(mask).convert(mode).save(path)


def save_nifti(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.0, 1.0])), str(path))


def volume(index: int, hounsfield: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(index)
    image = rng.standard_normal((8, 7, 5)).astype(np.float32)
    if hounsfield:
        image = np.rint(40 + 30 * image).astype(np.int16)
    label = np.zeros((8, 7, 5), np.uint8)
    label[2:6, 2:5, 1:4] = 1
    return image, label


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


Built = tuple[Path, list[str] | None]  # dataset_dir, the official test ids (None: the data set has none)


def kvasir(root: Path) -> Built:
    folder = root / "Kvasir-SEG"
    for i in range(10):
        save_rgb(folder / "images" / f"cju{i:02d}qkwl35piu0993l0dewei2.jpg", 20 * i + 10)
        save_mask(folder / "masks" / f"cju{i:02d}qkwl35piu0993l0dewei2.jpg", mode="RGB")
    return folder, None


def _isic2018(root: Path, with_test_truth: bool) -> Built:
    def case(split: str, number: int, truth: bool = True) -> None:
        save_rgb(root / f"ISIC2018_Task1-2_{split}_Input" / f"ISIC_{number:07d}.jpg", number % 200)
        if truth:
            save_mask(root / f"ISIC2018_Task1_{split}_GroundTruth" / f"ISIC_{number:07d}_segmentation.png")

    for number in range(10):
        case("Training", number)
    for number in (12255, 12256):
        case("Validation", number)
    for number in (12169, 12170):
        case("Test", number, truth=with_test_truth)
    return root, (["ISIC_0012169", "ISIC_0012170"] if with_test_truth else None)


def isic2018_with_test_truth(root: Path) -> Built:
    """All three official splits with ground truth (the test masks as released after the challenge)."""
    return _isic2018(root, with_test_truth=True)


def isic2018_without_test_truth(root: Path) -> Built:
    """The test images without ground truth: no official test set can be scored, so one is drawn."""
    return _isic2018(root, with_test_truth=False)


def isic2016(root: Path) -> Built:
    for split, numbers in (("Training", range(10)), ("Test", (9000, 9001, 9002))):
        for number in numbers:
            save_rgb(root / f"ISBI2016_ISIC_Part1_{split}_Data" / f"ISIC_{number:07d}.jpg", number % 200)
            save_mask(root / f"ISBI2016_ISIC_Part1_{split}_GroundTruth" / f"ISIC_{number:07d}_Segmentation.png")
    return root, ["ISIC_0009000", "ISIC_0009001", "ISIC_0009002"]


def busi(root: Path) -> Built:
    folder = root / "Dataset_BUSI_with_GT"
    for category, count in (("benign", 6), ("malignant", 4), ("normal", 2)):
        for i in range(1, count + 1):
            save_rgb(folder / category / f"{category} ({i}).png", 30 * i)
            save_mask(folder / category / f"{category} ({i})_mask.png")
    save_mask(folder / "benign" / "benign (1)_mask_1.png")  # a second lesion's mask, merged with the first
    return folder, None


LA_IDS = [f"{i}RZDK210BSMWAA6467LU" for i in range(10)]


def _la(root: Path, with_lists: bool) -> Built:
    la = root / "LA"
    for index, case_id in enumerate(LA_IDS):
        image, label = volume(index)
        path = la / "2018LA_Seg_Training Set" / case_id / "mri_norm2.h5"
        path.parent.mkdir(parents=True)
        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=image)
            f.create_dataset("label", data=label)
    if not with_lists:
        return la, None
    write_lines(la / "train.list", LA_IDS[:8])
    write_lines(la / "test.list", LA_IDS[8:])
    return la, LA_IDS[8:]


def la_with_lists(root: Path) -> Built:
    return _la(root, with_lists=True)


def la_without_lists(root: Path) -> Built:
    return _la(root, with_lists=False)


def _nifti_cases(root: Path, ids: list[str], images: str = "imagesTr", labels: str = "labelsTr") -> None:
    for index, case_id in enumerate(ids):
        image, label = volume(index)
        save_nifti(root / images / f"{case_id}_0000.nii.gz", image)
        save_nifti(root / labels / f"{case_id}.nii.gz", label)


NIFTI_IDS = [f"BraTS19_2013_{i}_1" for i in range(10)]


def nifti_plain(root: Path) -> Built:
    _nifti_cases(root, NIFTI_IDS)
    return root, None


def nifti_with_test_folder(root: Path) -> Built:
    """nnU-Net's ``imagesTs/`` + ``labelsTs/``: the official test split."""
    _nifti_cases(root, NIFTI_IDS[:8])
    _nifti_cases(root, NIFTI_IDS[8:], "imagesTs", "labelsTs")
    return root, NIFTI_IDS[8:]


def nifti_with_split_files(root: Path) -> Built:
    """UG-MCL's ``train.txt`` / ``val.txt`` / ``test.txt`` beside ``imagesTr/``."""
    _nifti_cases(root, NIFTI_IDS)
    write_lines(root / "train.txt", NIFTI_IDS[:6])
    write_lines(root / "val.txt", NIFTI_IDS[6:8])
    write_lines(root / "test.txt", NIFTI_IDS[8:])
    return root, NIFTI_IDS[8:]


def nifti_with_train_and_val_files_only(root: Path) -> Built:
    """An official validation list but no test list: the test cases are drawn from the training ones."""
    _nifti_cases(root, NIFTI_IDS)
    write_lines(root / "train.txt", NIFTI_IDS[:8])
    write_lines(root / "val.txt", NIFTI_IDS[8:])
    return root, None


def atm22(root: Path) -> Built:
    """Two training batches (with the withdrawn case 164), and ``imagesVal/`` without labels."""
    numbers = {"TrainBatch1": (1, 2, 3, 4, 5), "TrainBatch2": (164, 300, 301, 302, 303, 304)}
    for batch, batch_numbers in numbers.items():
        for number in batch_numbers:
            image, label = volume(number, hounsfield=True)
            save_nifti(root / batch / "imagesTr" / f"ATM_{number:03d}_0000.nii.gz", image)
            save_nifti(root / batch / "labelsTr" / f"ATM_{number:03d}_0000.nii.gz", label)
    save_nifti(root / "imagesVal" / "ATM_400_0000.nii.gz", volume(400, hounsfield=True)[0])
    return root, None


def _lits(root: Path, with_test_file: bool) -> Built:
    for number in (0, 1, 2, 3, 4, 28, 29, 30, 31, 32):
        image, label = volume(number, hounsfield=True)
        label[3, 3, 2] = 2  # a tumour voxel: labels 0 / 1 / 2 as in LiTS
        folder = root / ("Training Batch 1" if number < 28 else "Training Batch 2")
        save_nifti(folder / f"volume-{number}.nii", image)
        save_nifti(folder / f"segmentation-{number}.nii", label)
    if not with_test_file:
        return root, None
    write_lines(root / "test_num.txt", ["3", "30"])
    return root, ["volume-3", "volume-30"]


def lits_with_test_file(root: Path) -> Built:
    """ASE-Net's ``test_num.txt`` beside the batch folders."""
    return _lits(root, with_test_file=True)


def lits_without_test_file(root: Path) -> Built:
    return _lits(root, with_test_file=False)


FIXTURES: dict[str, tuple[str, int, Callable[[Path], Built]]] = {
    builder.__name__: (layout, dims, builder)
    for layout, dims, builder in (
        ("kvasir_seg", 2, kvasir),
        ("isic2018", 2, isic2018_with_test_truth),
        ("isic2018", 2, isic2018_without_test_truth),
        ("isic2016", 2, isic2016),
        ("busi", 2, busi),
        ("la_heart", 3, la_with_lists),
        ("la_heart", 3, la_without_lists),
        ("nifti", 3, nifti_plain),
        ("nifti", 3, nifti_with_test_folder),
        ("nifti", 3, nifti_with_split_files),
        ("nifti", 3, nifti_with_train_and_val_files_only),
        ("atm22", 3, atm22),
        ("lits", 3, lits_with_test_file),
        ("lits", 3, lits_without_test_file),
    )
}
LAYOUT_DIMS = {layout: dims for layout, dims, _ in FIXTURES.values()}


# ---------------------------------------------------------------------------------------------- config stacks
def _sets_split_keys(config: Path) -> bool:
    content = json.loads(config.read_text())
    return any(key in SPLIT_KEYS or key.startswith("validate#dataset") for key in content)


def stacks(bundle: str) -> list[tuple[str, ...]]:
    """The config stacks of a bundle whose datalist can differ from that of ``train.json`` alone."""
    folder = ROOT / "bundles" / bundle / "configs"
    names = sorted(p.stem for p in folder.glob("*.json"))
    training = [n for n in names if n not in NOT_TRAINING and not n.startswith("evaluate")]
    found: list[tuple[str, ...]] = [("train",)]
    for name in training:
        if name == "benchmark" or name.startswith("quick_"):
            continue
        if name == "quick" or _sets_split_keys(folder / f"{name}.json"):
            found.append(("train", name))
    if "benchmark" in names and "quick" in names:
        found.append(("train", "quick", "benchmark"))
    for name in training:
        base = name.removeprefix("quick_")
        if name.startswith("quick_") and base in names and "quick" in names:
            found.append(("train", base, "quick", name))
    return found


def parser_for(bundle: str, stack: tuple[str, ...], extra: tuple[str, ...] = ()) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(ROOT / "bundles" / bundle / "configs" / f"{name}.json") for name in stack + extra])
    return parser


def layout_of(parser: ConfigParser) -> str:
    return get_layout(parser.get_parsed_content("dataset_layout")).name


STACKS = [(bundle, stack) for bundle in BUNDLES for stack in stacks(bundle)]


def _stack_id(bundle: str, stack: tuple[str, ...]) -> str:
    return f"{bundle}/{'+'.join(stack)}"


def _cases() -> list:
    params = []
    for bundle, stack in STACKS:
        layout = layout_of(parser_for(bundle, stack))
        for variant, (_, dims, _) in FIXTURES.items():
            if dims == LAYOUT_DIMS.get(layout):
                params.append(pytest.param(bundle, stack, variant, id=f"{_stack_id(bundle, stack)}-{variant}"))
    return params


# ------------------------------------------------------------------------------------------------------ checks
def ids(cases: list[dict[str, Any]]) -> set[str]:
    return {str(case["id"]) for case in cases}


def assert_held_out(datalist: dict[str, Any], official_test: list[str] | None, where: str) -> None:
    """Non-empty test, disjoint from every other list (by id and by image file), the official one where it exists."""
    test = ids(datalist["test"])
    assert test, f"{where}: the test split is empty"
    for key in ("validation", "training", "unlabeled"):
        shared = test & ids(datalist[key])
        assert not shared, f"{where}: test and {key} share {sorted(shared)}"
        shared_files = {c["image"] for c in datalist["test"]} & {c["image"] for c in datalist[key]}
        assert not shared_files, f"{where}: test and {key} share the images {sorted(shared_files)}"
    assert not ids(datalist["validation"]) & (ids(datalist["training"]) | ids(datalist["unlabeled"])), where
    if official_test is not None:
        assert test == set(official_test), f"{where}: the data set's official test set is {official_test}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """Each fixture written once per module, on first use."""
    cache: dict[str, Built] = {}

    def get(variant: str) -> Built:
        if variant not in cache:
            cache[variant] = FIXTURES[variant][2](tmp_path_factory.mktemp(variant))
        return cache[variant]

    return get


def user_data_parser(
    bundle: str, stack: tuple[str, ...], variant: str, dataset_dir: Path, output: Path, extra: tuple[str, ...] = ()
) -> ConfigParser:
    parser = parser_for(bundle, stack, extra)
    parser["dataset_dir"] = str(dataset_dir)
    parser["dataset_layout"] = FIXTURES[variant][0]
    parser["output_dir"] = str(output)
    for key in LABELED_COUNT_KEYS:
        value = parser.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > SMALL_LABELED_COUNT:
            parser[key] = SMALL_LABELED_COUNT
    return parser


def test_every_registered_layout_has_a_fixture() -> None:
    """A new layout adapter joins this suite only with a tiny fixture in its public layout here."""
    assert sorted(LAYOUTS) == sorted(LAYOUT_DIMS), "add a fixture writer to FIXTURES for each registered layout"


@pytest.mark.parametrize(("bundle", "stack", "variant"), _cases())
def test_test_split_is_held_out_on_every_layout(
    bundle: str, stack: tuple[str, ...], variant: str, built: Callable[[str], Built], tmp_path: Path
) -> None:
    dataset_dir, official_test = built(variant)
    parser = user_data_parser(bundle, stack, variant, dataset_dir, tmp_path / "eval")
    datalist = parser.get_parsed_content("datalist")
    where = f"{_stack_id(bundle, stack)} on {variant}"
    assert_held_out(datalist, official_test, where)

    on_disk = load_datalist(parser.get_parsed_content("datalist_file"))
    assert {key: ids(on_disk[key]) for key in LISTS} == {key: ids(datalist[key]) for key in LISTS}, where
    # the checkpoint is selected on the validation list, never on the test list
    assert ids(parser.get_parsed_content("validate#dataset#data")) == ids(datalist["validation"]), where


@pytest.mark.parametrize(("bundle", "stack"), [pytest.param(b, s, id=_stack_id(b, s)) for b, s in STACKS])
def test_evaluate_scores_the_test_split_only(
    bundle: str, stack: tuple[str, ...], built: Callable[[str], Built], tmp_path: Path
) -> None:
    layout = layout_of(parser_for(bundle, stack))
    variant = next(name for name, (fixture_layout, _, _) in FIXTURES.items() if fixture_layout == layout)
    dataset_dir, _ = built(variant)
    parser = user_data_parser(bundle, stack, variant, dataset_dir, tmp_path / "eval", extra=("evaluate",))
    assert parser.get_parsed_content("eval_split") == "test"
    datalist = parser.get_parsed_content("datalist")
    assert_held_out(datalist, None, f"{_stack_id(bundle, stack)} + evaluate on {variant}")
    scored = parser.get_parsed_content("validate#dataset#data")
    assert scored == datalist["test"], f"{_stack_id(bundle, stack)} + evaluate scores other cases than the test split"


class StandInPhantom:
    """The stack's phantom at its ``num_cases``, with tiny images: the split depends on the ids, not the pixels."""

    def __init__(self, num_cases: int, dims: int) -> None:
        self.num_cases = num_cases
        self.dims = dims

    def params(self) -> dict[str, Any]:
        return {"stand_in": True, "num_cases": self.num_cases, "dims": self.dims}

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.dims == 2:
            image = np.full((10, 12, 3), index % 256, np.uint8)
            mask = np.zeros((10, 12), bool)
            mask[2:6, 3:8] = True
            return image, mask
        image, label = volume(index)
        return image, label.astype(bool)


@pytest.mark.parametrize(("bundle", "stack"), [pytest.param(b, s, id=_stack_id(b, s)) for b, s in STACKS])
def test_the_stacks_own_phantom_keeps_a_test_split(bundle: str, stack: tuple[str, ...], tmp_path: Path) -> None:
    parser = parser_for(bundle, stack)
    layout = get_layout(parser.get_parsed_content("dataset_layout"))
    phantom = StandInPhantom(int(parser.get_parsed_content("phantom#num_cases")), LAYOUT_DIMS[layout.name])
    parser["phantom"] = phantom
    parser["phantom_dir"] = str(tmp_path / "phantom")
    parser["output_dir"] = str(tmp_path / "eval")
    parser["check_data"] = False  # the files are the layout's own writer's; this test is about the split
    datalist = parser.get_parsed_content("datalist")
    official = [case["id"] for case in layout.find_cases(tmp_path / "phantom") if case.get("official_split") == "test"]
    assert_held_out(datalist, official or None, f"{_stack_id(bundle, stack)} on its phantom ({phantom.num_cases})")
