"""MONAI Label: every exported bundle is what MONAI Label's ``monaibundle`` app reads, and a real server infers with it.

Integration (``-m integration``, no trained model needed): the staged export of every bundle passes
:mod:`common.bundle.monai_label`'s check, run from the export folder with the ``common`` package blocked: the reads and
instantiations of MONAI Label's ``BundleInferTask`` and ``BundleTrainTask`` (``network_def``, ``preprocessing``,
``inferer``, ``postprocessing``, ``device`` replaced by a device name, ``channel_def`` labels, ``network`` and the
overridden ids of ``train.json``); it runs in the export's blocked-``common`` process of
``tests/conformance/test_sharing.py::test_export_runs_without_common`` (one process for its three checks). The
default run checks the same contract on one staged bundle in-process (``tests/bundle/test_monai_label.py``).

Slow (``-m slow``): a real MONAI Label server. MONAI Label imports torchvision at module level (its post transforms),
and PyPI's torchvision does not load beside the CPU build of torch 2.13 that the project uses; the matching pair
torch 2.14.1 + torchvision 0.29.1 does (a CUDA build that runs on the CPU). So the server runs in its own virtual
environment, ``MONAI_LABEL_REQUIREMENTS`` (about 8 GB, 10 minutes to build with an empty pip cache), or in the one
``LEB_MONAILABEL_PYTHON`` names. The test copies MONAI Label's ``monaibundle`` app, puts the export of a
quick-trained copy in its ``model/`` folder, starts ``monailabel start_server`` on 127.0.0.1 with a studies folder
holding one demo case, asks ``POST /infer/<model>`` for a label, checks its shape and values against the input and
against the bundle's own inference, and stops the server. Every request is bounded in time; nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import LoadImage
from sharing import (
    TRAINED,
    build_venv,
    demo_case,
    export_trained,
    outside_env,
    required_packages,
    run,
)
from test_bundles import get_trained, grouped

from common.data.io import read_array, spatial_shape

MONAI_LABEL_REQUIREMENTS = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "monai==1.6.1",
    "monailabel==0.8.5",
    # monailabel 0.8.5 asks for pydicom>=2.4.4, but pydicom-seg 0.4.1, which it imports, needs pydicom 2
    # (pydicom 3 removed pydicom._storage_sopclass_uids), and so do these releases of its DICOM clients.
    "pydicom==2.4.4",
    "pynetdicom==2.1.1",
    "dicomweb-client==0.59.3",
]
SERVER_START_S = 300
INFER_S = 600


# ------------------------------------------------------------------------------------------------------ slow
@pytest.fixture(scope="session")
def monai_label_python(tmp_path_factory) -> Path:
    """A Python with MONAI Label: ``LEB_MONAILABEL_PYTHON`` or a virtual environment built for this session."""
    given = os.environ.get("LEB_MONAILABEL_PYTHON")
    if given:
        return Path(given)
    venv = tmp_path_factory.mktemp("monailabel") / "venv"
    seconds = build_venv(venv, MONAI_LABEL_REQUIREMENTS)
    print(f"\nMONAI Label environment built in {seconds:.0f} s")
    return venv / "bin" / "python"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def stop_server(proc: subprocess.Popen) -> None:
    """End the server's whole process group: SIGTERM, then SIGKILL after 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _wait_for_server(base: str, proc: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"MONAI Label exited ({proc.returncode}):\n{log.read_text()[-6000:]}")
        try:
            return json.loads(_request(f"{base}/info/", timeout=5)[2])
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            time.sleep(2)
    pytest.fail(f"MONAI Label did not answer within {SERVER_START_S} s:\n{log.read_text()[-6000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("name", grouped("trained"))
def test_monai_label_server_infers_with_exported_bundle(name, monai_label_python, tmp_path_factory):
    start = time.perf_counter()
    bundle = get_trained(TRAINED, name, tmp_path_factory)
    work = tmp_path_factory.mktemp(f"{name}_monailabel")
    export, _ = export_trained(bundle, name, work / "dist")
    python = str(monai_label_python)
    env = outside_env()
    env.update(MONAI_LABEL_SESSION_PATH=str(work / "sessions"), MONAI_LABEL_DATASTORE_AUTO_RELOAD="false")
    run([python, "-m", "pip", "install", "--quiet", *required_packages(export)], work, env, timeout=1200)

    run([python, "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle", "--output", work / "apps"],
        work, env)  # fmt: skip
    app = work / "apps" / "monaibundle"
    model_dir = app / "model" / export.name
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    os.rename(export, model_dir)
    image = demo_case(bundle, work / "demo")
    studies = work / "studies"
    studies.mkdir()
    shutil.copy2(image, studies / image.name)
    suffixes = "".join(image.suffixes)
    env["MONAI_LABEL_DATASTORE_FILE_EXT"] = json.dumps([f"*{suffixes}"])  # e.g. an HDF5 volume of the LA benchmark

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = work / "server.log"
    cmd = [python, "-m", "monailabel.main", "start_server", "--app", app, "--studies", studies,
           "--conf", "models", export.name, "--conf", "zoo_source", "github", "--conf", "sam2", "false",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        info = _wait_for_server(base, proc, log)
        assert export.name in info["models"], info
        meta = json.loads((model_dir / "configs" / "metadata.json").read_text())
        channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        labels = {v.lower(): int(k) for k, v in channels.items() if v.lower() != "background"}
        assert info["models"][export.name]["labels"] == labels

        image_id = image.name[: -len(suffixes)]
        body, content_type = _multipart({"params": json.dumps({"device": "cpu", "result_extension": ".nii.gz"})})
        url = f"{base}/infer/{export.name}?image={image_id}&output=image"
        try:
            status, headers, content = _request(url, body, {"Content-Type": content_type}, timeout=INFER_S)
        except urllib.error.HTTPError as e:
            pytest.fail(f"POST {url}: {e.code} {e.read()[:500]!r}\n{log.read_text()[-6000:]}")
        assert status == 200 and "nii.gz" in headers.get("content-disposition", ""), headers
    finally:
        stop_server(proc)

    label_file = work / "label.nii.gz"
    label_file.write_bytes(content)
    own = work / "own"  # the bundle's own inference on the same image, for comparison
    run([python, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--dataset_dir", image.parent,
         "--output_dir", own], model_dir, env)  # fmt: skip
    label = np.asarray(LoadImage(image_only=True)(str(label_file))).squeeze()
    own_outputs = [p for p in own.rglob("*") if p.is_file()]
    assert len(own_outputs) == 1, own_outputs
    reference = np.asarray(LoadImage(image_only=True)(str(own_outputs[0]))).squeeze()
    assert label.shape == reference.shape, (label.shape, reference.shape)
    assert sorted(label.shape) == sorted(spatial_shape(image, read_array(image))), (label.shape, image)
    assert set(np.unique(label).tolist()) <= {0, *labels.values()}, np.unique(label)
    values = np.unique(reference)
    if values.max() > max(labels.values()):  # a bundle may scale its own output, e.g. 0/255 PNG masks
        reference = np.searchsorted(values, reference)
    agreement = float((label.squeeze() == reference).mean())
    assert agreement > 0.99, f"MONAI Label's label agrees with the bundle's own inference on {agreement:.3f}"
    print(f"\nMONAI Label test of {name}: {time.perf_counter() - start:.0f} s, agreement {agreement:.4f}")
