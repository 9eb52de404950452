"""A tiny trained checkpoint (seconds) for the serving, bulk-captioning and export tests: the training tests' tiny
model and data (tests/training/conftest.py), one XE epoch, no SCST, no evaluation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_training_conftest",
                                               Path(__file__).resolve().parents[1] / "training" / "conftest.py")
training_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(training_conftest)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> list[Path]:
    """36 small JPEGs of one coloured shape each (the training tests' data)."""
    data = training_conftest.make_dataset(tmp_path_factory.mktemp("serving_data"))
    return sorted(data.parent.glob("img_*.jpg"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_images) -> Path:
    from fsgr.config import load_config
    from fsgr.training import train

    tmp = tmp_path_factory.mktemp("serving_ckpt")
    data_json = tiny_images[0].parent / "dataset_tiny.json"
    cfg = training_conftest.tiny_config(
        data_json, tmp / "run", train={"max_epochs": 1, "xe_most": 1},
        eval={"beam_size": 3, "max_len": 10, "val_loss": False, "test_at_end": False, "metrics": "cider"})
    train(load_config(training_conftest.write_config(tmp / "tiny.yaml", cfg)), progress=False)
    return tmp / "run" / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def captioner(tiny_checkpoint):
    """The tiny checkpoint as `fsgr.Captioner` on the CPU."""
    from fsgr.inference import Captioner

    return Captioner.from_checkpoint(tiny_checkpoint, device="cpu")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tiny_checkpoint):
    """`fsgr serve` on the tiny checkpoint in a subprocess (a real uvicorn server); its base URL."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "fsgr", "serve", "--checkpoint", str(tiny_checkpoint), "--port",
                             str(port), "--batch-window-ms", "50"], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"fsgr serve did not start: {proc.stderr.read()[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def live():
    """live(app): a context manager serving `app` on 127.0.0.1 (a free port) with uvicorn in a thread; yields an
    httpx client on its base URL (a real HTTP client against a real server)."""
    import contextlib
    import socket
    import threading
    import time

    httpx = pytest.importorskip("httpx")
    uvicorn = pytest.importorskip("uvicorn")

    @contextlib.contextmanager
    def serve(app):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        for _ in range(600):                              # bounded: 30 s
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=120) as client:
                yield client
        finally:
            server.should_exit = True
            thread.join(30)
            sock.close()
    return serve
