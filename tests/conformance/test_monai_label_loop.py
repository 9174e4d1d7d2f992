"""The annotation loop through a real MONAI Label server running our app (``apps/monailabel``), semi-supervised.

Slow (``-m slow``): for one 2D (``dfcps``) and one 3D (``ugmcl``) semi-supervised bundle, a quick-trained copy is
exported and served by ``apps/monailabel`` (MONAI Label 0.8.5, in the environment of
``test_monai_label_app.py``: ``LEB_MONAILABEL_PYTHON`` or one built for the session). The studies folder holds five
phantom cases, two of them labeled (a 0/1 PNG and a 0/255 JPEG mask for the 2D bundle, a NIfTI and an NRRD label
for the 3D one). On 127.0.0.1, the test asks

1. ``GET /info/``: the model, its labels and its trainer are listed;
2. ``POST /infer/<model>`` with no parameters (MONAI Label's default answer, a multipart of JSON and label file) and
   with ``output=json``: the label has the image's spatial shape, in MONAI's order, with label values only;
3. ``PUT /datastore/label`` of a new label as NRRD (what 3D Slicer saves);
4. ``POST /train/<model>`` for one epoch of the bundle's ``quick.json`` schedule (``--conf train_overlays``): the
   task ends DONE, ``models/model.pt`` is rewritten, and the server's log shows the datastore's unlabeled studies in
   the bundle's datalist (the app's datalist line and the bundle's banner) and the iterations trained;
5. ``POST /scoring/uncertainty`` (MONAI Label's background scoring process, 2 Monte-Carlo passes where the bundle
   has them): every unlabeled study gets the bundle's own uncertainty in its datastore info, and a second request
   with the same weights skips them all; ``POST /activelearning/uncertainty`` returns the unlabeled study with the
   highest score (``/activelearning/first`` still answers too);
6. the next study to label (the one ``uncertainty`` chose),
   ``PUT /datastore/label`` for it, and a second ``POST /train/<model>``, which trains again (not a no-op resume).

The server is stopped in every case (its process group). Timings of each step are printed.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import itk
import nibabel as nib
import numpy as np
import pytest
from monai.data import ITKWriter
from monai.transforms import LoadImage
from PIL import Image
from sharing import ROOT, TRAINED, export_trained, outside_env, required_packages, run
from test_bundles import get_trained, grouped, parse
from test_monai_label_app import (  # noqa: F401
    _free_port,
    _multipart,
    _request,
    _wait_for_server,
    monai_label_python,
    stop_server,
)

APP = ROOT / "apps" / "monailabel"
LOOP_BUNDLES = ("dfcps", "ugmcl")
"""One 2D and one 3D semi-supervised bundle."""
INFER_S = 600
TRAIN_S = 1800
LA_SPACING = 0.625


# ---------------------------------------------------------------------------------------------- studies
def _truth(case: dict) -> np.ndarray:
    """A case's true mask in MONAI's array order (``(W, H)`` for 2D), 0/1."""
    label = case["label"]
    if str(label).endswith(".h5"):
        with h5py.File(label, "r") as h5:
            return (np.asarray(h5["label"]) > 0).astype(np.uint8)
    array = np.asarray(LoadImage(image_only=True, reader="PILReader")(str(label)))
    return (array.max(axis=-1) >= 128 if array.ndim == 3 else array >= 128).astype(np.uint8)


def _write_nrrd(path: Path, mask: np.ndarray) -> Path:
    """An NRRD as MONAI Label and 3D Slicer write it: ITK's axis order (x first), 3D with the LA voxel size."""
    if mask.ndim == 2:
        itk.imwrite(itk.image_from_array(np.ascontiguousarray(mask.T)), str(path))
        return path
    writer = ITKWriter(output_dtype=np.uint8)
    writer.set_data_array(mask, channel_dim=None)
    writer.set_metadata({"affine": np.diag([LA_SPACING] * 3 + [1.0])})
    writer.write(str(path))
    return path


def _write_label(path: Path, case: dict, form: str) -> Path:
    mask = _truth(case)
    if form == "png01":
        Image.fromarray(np.ascontiguousarray(mask.T)).save(path)
    elif form == "mask_as_is":  # the data set's own 0/255 RGB JPEG mask
        shutil.copy2(case["label"], path)
    elif form == "nifti":
        nib.save(nib.Nifti1Image(mask, np.diag([LA_SPACING] * 3 + [1.0])), path)
    else:
        _write_nrrd(path, mask)
    return path


def _studies(bundle: Path, studies: Path) -> tuple[list[str], list[str], dict[str, dict]]:
    """Five phantom cases of the trained copy's data as a MONAI Label studies folder, two labeled.

    Returns:
        the labeled ids, the unlabeled ids, and each case (``image``, ``label`` of the phantom) by id.
    """
    datalist = parse(bundle, "train", "quick").get_parsed_content("datalist")
    cases = sorted(
        (c for key in ("test", "validation", "training") for c in datalist[key]), key=lambda c: str(c["id"])
    )[:5]
    (studies / "labels" / "final").mkdir(parents=True)
    by_id = {}
    for case in cases:
        suffix = "".join(Path(case["image"]).suffixes)
        shutil.copy2(case["image"], studies / f"{case['id']}{suffix}")
        by_id[str(case["id"])] = case
    ids = sorted(by_id)
    three_d = str(cases[0]["image"]).endswith(".h5")
    forms = (("nifti", ".nii.gz"), ("nrrd", ".nrrd")) if three_d else (("png01", ".png"), ("mask_as_is", ".jpg"))
    for case_id, (form, suffix) in zip(ids[:2], forms):
        _write_label(studies / "labels" / "final" / f"{case_id}{suffix}", by_id[case_id], form)
    return ids[:2], ids[2:], by_id


# ---------------------------------------------------------------------------------------------- HTTP
def _multipart_file(field: str, filename: str, content: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _call(method: str, url: str, body: bytes | None, content_type: str | None, timeout: float, log: Path):
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": content_type} if content_type else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        pytest.fail(f"{method} {url}: {e.code} {e.read()[:800]!r}\n{log.read_text()[-6000:]}")


def _multipart_parts(content_type: str, content: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The parts of MONAI Label's default infer answer: ``{name: (filename, bytes)}``."""
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + content)
    parts = {}
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


@contextmanager
def _server(python: str, app: Path, studies: Path, model: str, env: dict, log: Path) -> Iterator[str]:
    """A MONAI Label server with our app on a free loopback port; stopped (its process group) on exit."""
    port = _free_port()
    cmd = [python, "-m", "monailabel.main", "start_server", "--app", app, "--studies", studies,
           "--conf", "models", model, "--conf", "zoo_source", "github", "--conf", "sam2", "false",
           "--conf", "train_overlays", "quick.json", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd], cwd=app.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_server(f"http://127.0.0.1:{port}", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


def _train(base: str, model: str, log: Path, params: dict) -> tuple[str, float]:
    """``POST /train/<model>``, waited for; the server log's lines written meanwhile, and the seconds taken."""
    start = time.perf_counter()
    offset = log.stat().st_size
    _, _, content = _call("POST", f"{base}/train/{model}", json.dumps(params).encode(), "application/json", 60, log)
    task_id = json.loads(content)["id"]
    deadline = time.monotonic() + TRAIN_S
    while time.monotonic() < deadline:
        time.sleep(5)
        tasks = json.loads(_request(f"{base}/train/?all=true", timeout=30)[2])
        task = next(t for t in tasks if t["id"] == task_id)
        if task["status"] not in ("SUBMITTED", "RUNNING"):
            break
    else:
        pytest.fail(f"training did not end within {TRAIN_S} s:\n{log.read_text()[-6000:]}")
    with open(log, "rb") as stream:
        stream.seek(offset)
        lines = stream.read().decode(errors="replace")
    assert task["status"] == "DONE", f"{task}\n{lines[-8000:]}"
    return lines, time.perf_counter() - start


def _scoring_idle(base: str, log: Path) -> None:
    """Wait until no scoring task runs (MONAI Label also starts one itself: at start-up, after a training and after
    each active-learning request, its ``auto_update_scoring``)."""
    deadline = time.monotonic() + INFER_S
    while time.monotonic() < deadline:
        try:
            _request(f"{base}/scoring/?check_if_running=true", timeout=30)
        except urllib.error.HTTPError as e:
            if e.code == 404:  # no scoring task running
                return
            raise
        time.sleep(3)
    pytest.fail(f"scoring did not end within {INFER_S} s:\n{log.read_text()[-6000:]}")


def _score(base: str, log: Path, params: dict) -> str:
    """``POST /scoring/uncertainty`` (MONAI Label's background scoring process), waited for; the log lines it wrote.

    A request while MONAI Label's own scoring runs is refused (429, "Scoring Task is Already Running"): wait, retry.
    """
    _scoring_idle(base, log)
    offset = log.stat().st_size
    body = json.dumps(params).encode()
    for _ in range(20):
        request = urllib.request.Request(
            f"{base}/scoring/uncertainty", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                task_id = json.loads(response.read())["id"]
                break
        except urllib.error.HTTPError as e:
            if e.code != 429:
                pytest.fail(f"POST /scoring/uncertainty: {e.code} {e.read()[:800]!r}\n{log.read_text()[-6000:]}")
            _scoring_idle(base, log)
    else:
        pytest.fail(f"POST /scoring/uncertainty refused 20 times:\n{log.read_text()[-6000:]}")
    # wait for this task by its id: right after the POST its process may not be registered yet, and "none running"
    # would end the wait before it started
    deadline = time.monotonic() + INFER_S
    while time.monotonic() < deadline:
        time.sleep(3)
        tasks = json.loads(_request(f"{base}/scoring/?all=true", timeout=30)[2])
        if next(t for t in tasks if t["id"] == task_id)["status"] not in ("SUBMITTED", "RUNNING"):
            break
    else:
        pytest.fail(f"scoring did not end within {INFER_S} s:\n{log.read_text()[-6000:]}")
    with open(log, "rb") as stream:
        stream.seek(offset)
        return stream.read().decode(errors="replace")


def _put_label(base: str, image_id: str, path: Path, log: Path) -> None:
    body, content_type = _multipart_file("label", path.name, path.read_bytes(), {"params": "{}"})
    status, _, _ = _call("PUT", f"{base}/datastore/label?image={image_id}&tag=final", body, content_type, 120, log)
    assert status == 200


def _assert_trained(lines: str, labeled: int, unlabeled: list[str], epoch_length: int, val_split: float) -> None:
    """What the server log must show of one training: the datalist with the unlabeled studies, iterations run."""
    datalist_line = next((line for line in lines.splitlines() if "Datastore datalist" in line), "")
    validation = int(val_split * labeled + 0.5)
    training = labeled if validation in (0, labeled) else labeled - validation  # lib.datalist.split_labeled
    assert f"training {training} labeled" in datalist_line, lines[-8000:]
    assert f"unlabeled {len(unlabeled)} ({unlabeled})" in datalist_line, datalist_line
    banner = next((line for line in lines.splitlines() if "training starts:" in line), "")
    assert f"unlabeled {len(unlabeled)}" in banner, lines[-8000:]
    assert f"{epoch_length} iterations per epoch x 1 epochs" in banner, banner
    assert f"Iter: {epoch_length}/{epoch_length}" in lines, lines[-8000:]  # StatsHandler's last iteration line
    assert "Trained zero iterations" not in lines, lines[-8000:]


# ---------------------------------------------------------------------------------------------- the test
@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in grouped("trained") if p.values[0] in LOOP_BUNDLES])
def test_monai_label_annotation_loop(name, monai_label_python, tmp_path_factory):  # noqa: F811 (the fixture)
    times: dict[str, float] = {}
    start = time.perf_counter()
    bundle = get_trained(TRAINED, name, tmp_path_factory)
    work = tmp_path_factory.mktemp(f"{name}_monailabel_loop")
    export, times["export"] = export_trained(bundle, name, work / "dist")
    python = str(monai_label_python)
    env = outside_env()
    env.update(MONAI_LABEL_SESSION_PATH=str(work / "sessions"), MONAI_LABEL_DATASTORE_AUTO_RELOAD="false")
    run([python, "-m", "pip", "install", "--quiet", *required_packages(export)], work, env, timeout=1200)

    app = work / "apps" / "monailabel"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "model"))
    model_dir = app / "model" / export.name
    model_dir.parent.mkdir(parents=True)
    os.rename(export, model_dir)
    studies = work / "studies"
    labeled, unlabeled, cases = _studies(bundle, studies)
    three_d = str(cases[labeled[0]]["image"]).endswith(".h5")
    env["MONAI_LABEL_DATASTORE_FILE_EXT"] = json.dumps(
        ["*.h5", "*.nii.gz", "*.nrrd"] if three_d else ["*.jpg", "*.png", "*.nrrd"]
    )
    quick = json.loads((model_dir / "configs" / "quick.json").read_text())
    epoch_length = int(quick["epoch_length"])
    meta = json.loads((model_dir / "configs" / "metadata.json").read_text())
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    label_values = {int(k) for k in channels}
    log = work / "server.log"

    mark = time.perf_counter()
    with _server(python, app, studies, export.name, env, log) as base:
        times["server start"] = time.perf_counter() - mark
        info = json.loads(_request(f"{base}/info/", timeout=30)[2])
        assert export.name in info["models"] and export.name in info["trainers"], info
        assert info["models"][export.name]["labels"] == {
            v.lower(): int(k) for k, v in channels.items() if v.lower() != "background"
        }

        # 2. inference, MONAI Label's default answer: the label with the image's geometry
        target = unlabeled[0]
        mark = time.perf_counter()
        body, content_type = _multipart({"params": "{}"})
        status, headers, content = _call(
            "POST", f"{base}/infer/{export.name}?image={target}", body, content_type, INFER_S, log
        )
        times["infer"] = time.perf_counter() - mark
        parts = _multipart_parts(headers["content-type"], content)
        filename, label_bytes = parts["image"]
        label_file = work / f"infer_{filename}"
        label_file.write_bytes(label_bytes)
        label = np.asarray(LoadImage(image_only=True)(str(label_file)))
        shape = _truth(cases[target]).shape
        assert label.shape == shape, (label.shape, shape, filename)  # W x H for 2D, not 1 x W x H
        assert set(np.unique(label).tolist()) <= label_values
        assert (".png" if not three_d else ".nii.gz") in filename
        status, _, content = _call(
            "POST", f"{base}/infer/{export.name}?image={target}&output=json", body, content_type, INFER_S, log
        )
        assert status == 200 and isinstance(json.loads(content), dict)

        # 3. a new label, as 3D Slicer saves it
        nrrd = _write_nrrd(work / f"{target}.nrrd", _truth(cases[target]))
        _put_label(base, target, nrrd, log)
        labeled, unlabeled = sorted([*labeled, target]), unlabeled[1:]

        # 4. training, semi-supervised: the unlabeled studies are in the bundle's datalist
        params = {"device": "cpu", "max_epochs": 1, "val_split": 0.2, "multi_gpu": False}
        model_pt = model_dir / "models" / "model.pt"
        before = model_pt.stat().st_mtime_ns
        lines, times["train 1"] = _train(base, export.name, log, params)
        _assert_trained(lines, len(labeled), unlabeled, epoch_length, params["val_split"])
        assert model_pt.stat().st_mtime_ns != before, "the training did not write models/model.pt"

        # --- scoring and active learning (lib/scoring.py, lib/strategy.py): their steps go here --------------------
        status, _, content = _call("POST", f"{base}/activelearning/first", b"{}", "application/json", 120, log)
        following = json.loads(content)["id"]
        assert following in unlabeled, (following, unlabeled)
        # 4b. the bundle's own uncertainty scores every unlabeled study, as MONAI Label runs it: a background
        #     process of its own (not run_sync), beside the server; 2 Monte-Carlo passes where the bundle has them;
        #     "force": MONAI Label's own automatic scoring after the training may have scored them already
        mark = time.perf_counter()
        lines = _score(base, log, {"device": "cpu", "uncertainty_passes": 2, "force": True})
        times["scoring"] = time.perf_counter() - mark
        n = len(unlabeled)
        assert f"'total': {n}, 'skipped': 0, 'executed': {n}, 'failed': {{}}" in lines, lines[-6000:]
        # 4c. the next study: the most uncertain unlabeled one, with its score (read from the datastore file the
        #     scoring process wrote, although this server does not auto-reload it)
        status, _, content = _call("POST", f"{base}/activelearning/uncertainty", b"{}", "application/json", 120, log)
        picked = json.loads(content)
        objects = json.loads(_request(f"{base}/datastore/?output=all", timeout=60)[2])["objects"]
        scores = {i: objects[i]["image"]["info"].get("uncertainty") for i in unlabeled}
        assert all(isinstance(s, float) and 0 <= s <= np.log(len(label_values)) for s in scores.values()), scores
        assert picked["id"] == max(unlabeled, key=lambda i: (scores[i], -unlabeled.index(i))), (picked, scores)
        assert picked["uncertainty"] == pytest.approx(scores[picked["id"]]) and picked["scored"] == n, picked
        following = picked["id"]
        # 4d. scoring again with the same weights skips every study
        lines = _score(base, log, {"device": "cpu"})
        assert f"'total': {n}, 'skipped': {n}, 'executed': 0" in lines, lines[-6000:]

        # 5. a label for it, and a second training, which trains
        _put_label(base, following, _write_nrrd(work / f"{following}.nrrd", _truth(cases[following])), log)
        labeled, unlabeled = sorted([*labeled, following]), [u for u in unlabeled if u != following]
        before = model_pt.stat().st_mtime_ns
        lines, times["train 2"] = _train(base, export.name, log, params)
        _assert_trained(lines, len(labeled), unlabeled, epoch_length, params["val_split"])
        assert model_pt.stat().st_mtime_ns != before, "the second training did not write models/model.pt"
    times["total"] = time.perf_counter() - start
    print(f"\nMONAI Label loop of {name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
