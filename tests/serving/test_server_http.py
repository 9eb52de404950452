"""`fsgr serve`'s app on a live uvicorn (127.0.0.1, in a thread) through a real HTTP client (httpx): uploads decode off
the event loop, the byte limit counts a chunked body as it arrives, the server's pixel limit replaces PIL's, and
every refusal is a 4xx JSON with a message."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra (pip install fsgr[serve]) is not installed")
pytest.importorskip("multipart", reason="the serve extra (pip install fsgr[serve]) is not installed")
pytest.importorskip("httpx", reason="the test extra (pip install fsgr[test]) is not installed")

from fsgr.serving.server import create_app  # noqa: E402


def _png(size, mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")         # one colour: a few KB whatever the size
    return buf.getvalue()


def test_healthz_answers_while_big_uploads_decode(captioner, live):
    big = _png((4000, 4000))                              # 16 MP: 48 MB as RGB once decoded
    app = create_app(captioner, max_pixels=20_000_000, decode_workers=2, window_ms=1)
    with live(app) as client:
        answers: list = []
        uploads = [threading.Thread(target=lambda: answers.append(client.post(
            "/api/caption", files={"image": ("big.png", big, "image/png")}))) for _ in range(30)]
        for t in uploads:
            t.start()
        # decoding on the event loop would leave no moment where /healthz can see an upload being decoded
        seen = []
        while any(t.is_alive() for t in uploads) and not any(seen):
            health = client.get("/healthz")
            assert health.status_code == 200
            seen.append(health.json()["uploads_decoding"])
        for t in uploads:
            t.join()
        assert max(seen) > 0, seen
        assert health.json()["decode_workers"] == 2
        assert len(answers) == 30 and all(r.status_code == 200 and r.json()["caption"] for r in answers)


def test_a_chunked_upload_is_refused_as_it_passes_the_byte_limit(captioner, live):
    sent = 0

    def body():
        nonlocal sent
        boundary = b"--fsgr\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
        yield boundary
        for _ in range(3200):                             # up to 200 MiB, far past the 1 MiB limit
            sent += 65536
            yield b"\0" * 65536

    app = create_app(captioner, max_bytes=2**20)
    with live(app) as client:
        r = client.post("/api/caption", content=body(), headers={"content-type": "multipart/form-data; boundary=fsgr"})
        assert sent < 64 * 2**20, f"{sent:,} bytes were taken before the refusal"
        assert r.status_code == 413 and "1,048,576 bytes" in r.json()["error"]
        assert r.headers["connection"] == "close"          # the client is told to stop sending
        assert client.get("/healthz").status_code == 200


def test_the_servers_pixel_limit_replaces_pils(captioner, live, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)   # PIL alone would refuse anything over 2,000 pixels
    app = create_app(captioner, max_pixels=1_000_000)
    with live(app) as client:
        r = client.post("/api/caption", files={"image": ("a.png", _png((300, 200), "RGB"))})
        assert r.status_code == 200 and r.json()["caption"]
        r = client.post("/api/caption", files={"image": ("b.png", _png((2000, 1000), "RGB"))})
        assert r.status_code == 413
        assert r.json()["error"] == ("image refused: 2000x1000 = 2.0 megapixels is above the limit of 1.0 megapixels "
                                     "(the server's --max-pixels)")
        assert client.get("/healthz").json()["max_pixels"] == 1_000_000
    assert Image.MAX_IMAGE_PIXELS == 1_000                 # PIL's own limit left as it was


@pytest.mark.parametrize("fields, words", [
    ({"max_len": "500"}, ["max_len"]),
    ({"beam": "-1"}, ["beam"]),
    ({"length_penalty": "abc"}, ["not a number"]),
    # issue 25, 4-5: a 500 (and "logprob": -Infinity) before; every decoding value is DecodeSettings' to refuse
    ({"beam": "100000"}, ["beam_size 100000", "words this model can generate"]),
    ({"num_beams": "2", "beam": "3"}, ["given twice"]),
    ({"length_penalty": "30"}, ["length_penalty 30.0", "between -10 and 10"]),
    ({"length_penalty": "1e308"}, ["length_penalty"]),
    ({"do_sample": "maybe"}, ["true or false"]),
    ({"do_sample": "on", "top_p": "0"}, ["top_p 0.0"]),
])
def test_bad_controls_are_4xx_json_with_a_message(captioner, live, fields, words):
    app = create_app(captioner)
    with live(app) as client:
        r = client.post("/api/caption", files={"image": ("a.png", _png((40, 30), "RGB"))}, data=fields)
        assert 400 <= r.status_code < 500, r.text
        assert all(w in r.json()["error"] for w in words), r.json()


@pytest.mark.parametrize("args, words", [
    (["--port", "99999"], "--port 99999: must be between 0 and 65535"),
    (["--port", "-1"], "--port -1: must be between 0 and 65535"),
    (["--host", "no.such.host.invalid"], "--host 'no.such.host.invalid': not an address"),
    (["--host", "192.0.2.1"], "--host '192.0.2.1': not an address of this machine"),     # TEST-NET-1: never ours
    (["--decode-workers", "0"], "--decode-workers 0"),
])
def test_bad_listening_arguments_are_refused_in_one_line(tiny_checkpoint, capsys, args, words):
    from fsgr.cli import main

    assert main(["serve", "--checkpoint", str(tiny_checkpoint), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"fsgr: error: {err.split('error: ', 1)[1]}" and words in err and err.count("\n") == 1, err


def test_a_port_in_use_is_could_not_bind_exit_3(tiny_checkpoint, capsys):
    import socket

    from fsgr.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(tiny_checkpoint), "--port", str(port)]) == 3
    err = capsys.readouterr().err
    assert f"could not bind 127.0.0.1:{port}" in err and "--port" in err and err.count("\n") == 1, err
