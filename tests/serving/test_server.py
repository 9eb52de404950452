"""The JSON API of `fsgr serve`: answers, decoding controls per request, every bad upload a 4xx JSON error, and
concurrent requests decoded in one batch."""

from __future__ import annotations

import io
import json
import threading
import urllib.request

import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra (pip install fsgr[serve]) is not installed")
pytest.importorskip("multipart", reason="the serve extra (pip install fsgr[serve]) is not installed")
from starlette.testclient import TestClient  # noqa: E402

from fsgr.serving.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(captioner):
    with TestClient(create_app(captioner, max_bytes=50_000, max_pixels=400 * 400)) as c:
        yield c


def _jpeg(size=(48, 40), colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def test_caption_beams_and_concepts(client, captioner, tiny_images):
    data = tiny_images[0].read_bytes()
    r = client.post("/api/caption", files={"image": ("a.jpg", data, "image/jpeg")}, data={"beam": "3"})
    assert r.status_code == 200
    body = r.json()
    assert body["caption"] == captioner.caption([str(tiny_images[0])], beam_size=3)[0]
    assert len(body["beams"]) == 3 and body["beams"][0]["caption"] == body["caption"]
    assert [b["logprob"] for b in body["beams"]] == sorted((b["logprob"] for b in body["beams"]), reverse=True)
    assert abs(sum(c["fraction"] for c in body["concepts"]) - 1) < 1e-3
    assert sum(c["patches"] for c in body["concepts"]) == 16 and len(body["grid"]) == 4 and len(body["grid"][0]) == 4
    assert body["decoding"]["beam_size"] == 3 and body["length"] >= 1
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["decoding"]["beam_size"] == 3


def test_decoding_controls_per_request(client, captioner, tiny_images):
    data = tiny_images[1].read_bytes()
    plain = client.post("/api/caption", files={"image": ("a.jpg", data)}).json()
    longer = client.post("/api/caption", files={"image": ("a.jpg", data)},
                         data={"min_len": "6", "no_repeat_ngram": "1"}).json()
    assert longer["length"] >= 6 > plain["length"]
    words = longer["caption"].split()
    assert len(set(words)) == len(words)
    expected = captioner.caption([str(tiny_images[1])], min_len=6, no_repeat_ngram=1)[0]
    assert longer["caption"] == expected


def test_every_decoding_control_is_a_form_field_under_fsgrs_and_hugging_faces_names():
    """CONTROL_FIELDS is derived from DecodeSettings and HF_NAMES: the API's names are these, in this order (the
    later of two names given for one field is the one a 400 names), each parsed as its field's type."""
    from dataclasses import fields

    from fsgr.models.decoding import HF_NAMES, DecodeSettings
    from fsgr.serving.server import CONTROL_FIELDS, _flag

    assert list(CONTROL_FIELDS) == ["beam", "num_beams", "max_len", "max_new_tokens", "min_len", "min_new_tokens",
                                    "length_penalty", "no_repeat_ngram", "no_repeat_ngram_size", "do_sample",
                                    "temperature", "top_k", "top_p", "num_return_sequences", "seed"]
    assert {name for name, _ in CONTROL_FIELDS.values()} == {f.name for f in fields(DecodeSettings)}
    assert all(CONTROL_FIELDS[hf][0] == ours for hf, ours in HF_NAMES.items())
    assert [CONTROL_FIELDS[k][1] for k in ("beam", "length_penalty", "do_sample", "seed")] == [int, float, _flag, int]


def test_a_control_given_under_both_names_is_refused(client):
    r = client.post("/api/caption", files={"image": ("x.jpg", _jpeg())}, data={"beam": "2", "num_beams": "3"})
    assert r.status_code == 400 and r.json()["error"] == "num_beams: given twice (under fsgr's and Hugging Face's name)"


@pytest.mark.parametrize("files, data, status, reason", [
    ({"image": ("x.jpg", b"definitely not an image")}, {}, 415, "not an image"),
    ({"image": ("x.jpg", _jpeg()[:200])}, {}, 400, "broken image"),
    ({"image": ("x.jpg", b"\0" * 60_000)}, {}, 413, "limit"),
    ({"image": ("x.png", b"")}, {}, 400, "empty"),
    ({"file": ("x.jpg", _jpeg())}, {}, 400, "'image'"),
    ({"image": ("x.jpg", _jpeg())}, {"beam": "0"}, 400, "beam"),
    ({"image": ("x.jpg", _jpeg())}, {"beam": "two"}, 400, "not an integer"),
    ({"image": ("x.jpg", _jpeg())}, {"max_len": "500"}, 400, "max_len"),
])
def test_bad_uploads_are_4xx_json(client, files, data, status, reason):
    r = client.post("/api/caption", files=files, data=data)
    assert r.status_code == status and reason in r.json()["error"]


def test_too_many_pixels_is_refused_before_decoding(client):
    buf = io.BytesIO()
    Image.new("L", (2000, 1000)).save(buf, format="PNG")                 # 2 Mpx, a few KB compressed
    r = client.post("/api/caption", files={"image": ("big.png", buf.getvalue())})
    assert r.status_code == 413 and "pixels" in r.json()["error"]


def test_not_multipart_and_unknown_routes(client):
    r = client.post("/api/caption", content=b"raw bytes", headers={"content-type": "image/jpeg"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()
    assert client.get("/api/caption").status_code == 405
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text
    assert "http://" not in page.text and "https://" not in page.text          # nothing fetched from elsewhere


def _post(url: str, data: bytes) -> dict:
    boundary = "fsgrtestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/api/caption", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_concurrent_requests_share_a_batch(server_url, tiny_images):
    images = [p.read_bytes() for p in tiny_images[:8]]
    alone = [_post(server_url, data)["caption"] for data in images]
    answers = [None] * 8
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, _post(server_url, images[i])))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a["caption"] for a in answers] == alone                     # batching changes no caption
    with urllib.request.urlopen(server_url + "/healthz") as r:
        batches = {int(k): v for k, v in json.loads(r.read())["batches"].items()}
    assert max(batches) > 1, batches
