"""`fsgr serve`: the web page and JSON API over a Captioner (Starlette + uvicorn: `pip install fsgr[serve]`).

    GET  /               the page (inline JS/CSS, works offline)
    GET  /healthz        {"status": "ok", "device", "precision", "image_size", "decoding", "max_bytes", "max_pixels",
                         "decode_workers", "uploads_decoding", "batches": {size: count}}
    POST /api/caption    multipart: `image` (file) and optional decoding fields, Hugging Face's names or fsgr's
                         (CONTROL_FIELDS: num_beams|beam, max_new_tokens|max_len, min_new_tokens|min_len,
                         length_penalty, no_repeat_ngram_size|no_repeat_ngram, do_sample, temperature, top_k, top_p,
                         num_return_sequences, seed) -> {"caption", "logprob", "length",
                         "beams": [{"caption", "logprob"}] (every beam, or every sample), "captions": [...] (the
                         num_return_sequences returned), "concepts": [{"id", "name", "patches", "fraction",
                         "background"}], "grid": [[id, ...]], "decoding": {...}, "precision", "seconds"}

Every bad request gets a 4xx JSON `{"error": reason}`: 400 (no image field, a broken/truncated image, a bad control
value: fsgr's ConfigError/DataError), 413 (more bytes or pixels than allowed), 415 (not an image). Never a traceback;
only a fault of the server itself is a 500, and it says what it was.

The event loop only moves bytes: the body is read as it arrives and refused once it passes the byte limit (a chunked
upload without Content-Length included, so nothing over the limit is ever spooled), decoding and preprocessing run on
a bounded pool of `decode_workers` threads, and the captioning on the Batcher's thread, so /healthz answers while
uploads decode. The pixel limit is the server's own (`max_pixels`), checked from the header before decoding and in
place of PIL's (which would refuse or warn at its own 89 MP whatever the server allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, fields

from fsgr.errors import FsgrError
from fsgr.models.decoding import HF_NAMES, DecodeSettings
from fsgr.serving.batching import Batcher
from fsgr.serving.page import PAGE


def _flag(value: str) -> bool:
    """A form's boolean: a checkbox sends "on"."""
    words = {"true": True, "1": True, "on": True, "yes": True, "false": False, "0": False, "off": False, "no": False}
    if value.lower() not in words:
        raise ValueError(value)
    return words[value.lower()]


FORM_NAMES = {"beam_size": "beam"}     # a DecodeSettings field whose form name is not its own (the page's "beam")
PARSERS = {"int": int, "Optional[int]": int, "float": float, "bool": _flag}   # by DecodeSettings field type
# form or query field -> (DecodeSettings field, parser), from DecodeSettings' fields in their order: fsgr's name, then
# Hugging Face generate()'s (HF_NAMES); the values are checked by DecodeSettings (a refusal is a 400)
CONTROL_FIELDS = {name: (f.name, PARSERS[f.type]) for f in fields(DecodeSettings)
                  for name in [FORM_NAMES.get(f.name, f.name),
                               *(hf for hf, ours in HF_NAMES.items() if ours == f.name)]}
KIND_NAMES = {int: "an integer", float: "a number", _flag: "true or false"}
FORM_FRAMING = 64 * 1024        # room for the multipart boundaries, headers and control fields around the image


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_upload(data: bytes, max_pixels: int):
    """Bytes of an upload -> RGB PIL image, or BadRequest with the reason. `max_pixels` is checked from the header,
    before decoding, and replaces PIL's own limit."""
    from PIL import UnidentifiedImageError

    from fsgr.data.decode import open_header, over_pixel_limit, to_rgb

    if not data:
        raise BadRequest(400, "the uploaded file is empty")
    try:
        img = open_header(io.BytesIO(data))
        if img.width * img.height > max_pixels:
            raise BadRequest(413, f"image refused: {over_pixel_limit(img.width, img.height, max_pixels)} "
                                  f"(the server's --max-pixels)")
        img.load()
        return to_rgb(img)
    except UnidentifiedImageError:
        raise BadRequest(415, "not an image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:      # PIL: truncated or corrupt data
        raise BadRequest(400, f"broken image ({' '.join(str(exc).split())})") from None


async def read_body(request, limit: int, max_bytes: int) -> bytes:
    """The request body, counted as it arrives: 413 as soon as it passes `limit` bytes, whatever the headers say."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, f"upload larger than the limit of {max_bytes:,} bytes")
    return bytes(body)


async def read_form(request, body: bytes):
    """The multipart form of a body already read (Starlette parses it from a replay of those bytes)."""
    from starlette.requests import Request

    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as exc:  # noqa: BLE001 - multipart parser errors: the client's fault, say why
        raise BadRequest(400, f"cannot read the form ({' '.join(str(exc).split()) or type(exc).__name__})") from None


def describe(caption, names, background: set[int]) -> dict:
    """A Caption -> the JSON body's caption, beams and concept parts."""
    ids = caption.concept_ids
    side = int(round(ids.numel() ** 0.5))
    values, counts = ids.unique(return_counts=True)
    order = counts.argsort(descending=True)
    concepts = [{"id": int(values[i]), "name": names(int(values[i])), "patches": int(counts[i]),
                 "fraction": round(int(counts[i]) / ids.numel(), 4), "background": int(values[i]) in background}
                for i in order.tolist()]
    return {"caption": caption.text, "logprob": round(caption.logprob, 4), "length": caption.length,
            "beams": [{"caption": text, "logprob": round(lp, 4)} for text, lp in caption.beams],
            "concepts": concepts, "grid": ids.view(side, -1).tolist()}


def create_app(captioner, max_bytes: int = 20 * 2**20, max_pixels: int = 40_000_000, max_batch: int = 16,
               window_ms: float = 5.0, decode_workers: int | None = None):
    """`decode_workers`: threads that decode and preprocess uploads (default: the CPUs, at most 4)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    batcher = Batcher(captioner, max_batch=max_batch, window_s=window_ms / 1000)
    background = set(captioner.background_ids())
    workers = decode_workers or min(4, os.cpu_count() or 1)
    decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fsgr-upload")
    decoding_now = 0                                     # uploads waiting for or in a decoder (on /healthz)

    def prepare(data: bytes):
        return captioner.preprocess(decode_upload(data, max_pixels))

    async def page(request: Request):
        return HTMLResponse(PAGE)

    async def healthz(request: Request):
        return JSONResponse({"status": "ok", "device": str(captioner.device), "precision": captioner.precision,
                             "image_size": captioner.image_size,
                             "decoding": asdict(captioner.settings()), "max_bytes": max_bytes,
                             "max_pixels": max_pixels, "decode_workers": workers, "uploads_decoding": decoding_now,
                             "batches": dict(sorted(batcher.batch_sizes.items()))})

    async def caption(request: Request):
        start = time.perf_counter()
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest(400, "bad Content-Length header") from None
        if declared > max_bytes + FORM_FRAMING:
            raise BadRequest(413, f"upload of {declared:,} bytes; the limit is {max_bytes:,}")
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise BadRequest(400, "send the image as multipart/form-data with the field 'image'")
        form = await read_form(request, await read_body(request, max_bytes + FORM_FRAMING, max_bytes))
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise BadRequest(400, "no file in the form field 'image'")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BadRequest(413, f"upload larger than the limit of {max_bytes:,} bytes")
        overrides = {}
        for key, (name, kind) in CONTROL_FIELDS.items():
            value = form.get(key, request.query_params.get(key))
            if value not in (None, ""):
                if name in overrides:
                    raise BadRequest(400, f"{key}: given twice (under fsgr's and Hugging Face's name)")
                try:
                    overrides[name] = kind(value)
                except ValueError:
                    raise BadRequest(400, f"{key}={value!r}: not {KIND_NAMES[kind]}") from None
        settings = captioner.settings(**overrides)           # FsgrError: 400 (input_error)
        nonlocal decoding_now
        decoding_now += 1
        try:
            x = await asyncio.get_running_loop().run_in_executor(decoders, prepare, data)
        finally:
            decoding_now -= 1
        result = await batcher.caption(x, settings)
        body = describe(result, captioner.concept_name, background)
        body.update(captions=[{"caption": text, "logprob": round(lp, 4)} for text, lp in result.sequences],
                    decoding=asdict(settings), precision=captioner.precision,
                    seconds=round(time.perf_counter() - start, 4))
        return JSONResponse(body)

    async def bad_request(request: Request, exc: BadRequest):
        # a refused body is not read to its end: close the connection, so the client stops sending it
        headers = {"Connection": "close"} if exc.status == 413 else None
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=headers)

    async def input_error(request: Request, exc: FsgrError):
        """fsgr's own refusals of a value or a file (ConfigError, DataError): the request's fault."""
        return JSONResponse({"error": " ".join(str(exc).split())}, status_code=400)

    async def http_error(request: Request, exc):
        return JSONResponse({"error": getattr(exc, "detail", "error")}, status_code=getattr(exc, "status_code", 500))

    async def internal_error(request: Request, exc: Exception):
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"},
                            status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            decoders.shutdown(wait=True)

    app = Starlette(routes=[Route("/", page), Route("/healthz", healthz),
                            Route("/api/caption", caption, methods=["POST"])],
                    exception_handlers={BadRequest: bad_request, FsgrError: input_error, HTTPException: http_error,
                                        Exception: internal_error},
                    lifespan=lifespan)
    app.state.batcher = batcher
    return app
