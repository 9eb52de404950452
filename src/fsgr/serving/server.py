"""`fsgr serve`: the web page and JSON API over a Captioner (Starlette + uvicorn: `pip install fsgr[serve]`).

    GET  /               the page (inline JS/CSS, works offline)
    GET  /healthz        {"status": "ok", "device", "image_size", "decoding", "batches": {size: count}}
    POST /api/caption    multipart: `image` (file) and optional `beam`, `max_len`, `min_len`, `length_penalty`,
                         `no_repeat_ngram` -> {"caption", "logprob", "length", "beams": [{"caption", "logprob"}],
                         "concepts": [{"id", "name", "patches", "fraction", "background"}], "grid": [[id, ...]],
                         "decoding": {...}, "seconds"}

Every bad request gets a 4xx JSON `{"error": reason}`: 400 (no image field, a broken/truncated image, a bad control
value), 413 (more bytes or pixels than allowed), 415 (not an image). Never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from dataclasses import asdict

from fsgr.errors import FsgrError
from fsgr.serving.batching import Batcher
from fsgr.serving.page import PAGE

CONTROL_FIELDS = {"beam": ("beam_size", int), "max_len": ("max_len", int), "min_len": ("min_len", int),
                  "length_penalty": ("length_penalty", float), "no_repeat_ngram": ("no_repeat_ngram", int)}


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_upload(data: bytes, max_pixels: int):
    """Bytes of an upload -> RGB PIL image, or BadRequest with the reason."""
    from PIL import Image, UnidentifiedImageError

    from fsgr.data.images import to_rgb

    if not data:
        raise BadRequest(400, "the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size                                  # header only: refuse before decoding the pixels
            if w * h > max_pixels:
                raise BadRequest(413, f"image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
            img.load()
        return to_rgb(img)
    except UnidentifiedImageError:
        raise BadRequest(415, "not an image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequest(413, f"too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:      # PIL: truncated or corrupt data
        raise BadRequest(400, f"broken image ({' '.join(str(exc).split())})") from None


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
               window_ms: float = 5.0):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    batcher = Batcher(captioner, max_batch=max_batch, window_s=window_ms / 1000)
    background = set(captioner.background_ids())

    async def page(request: Request):
        return HTMLResponse(PAGE)

    async def healthz(request: Request):
        return JSONResponse({"status": "ok", "device": str(captioner.device), "image_size": captioner.image_size,
                             "decoding": asdict(captioner.settings()), "max_bytes": max_bytes,
                             "max_pixels": max_pixels, "batches": dict(sorted(batcher.batch_sizes.items()))})

    async def caption(request: Request):
        start = time.perf_counter()
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest(400, "bad Content-Length header") from None
        if declared > max_bytes + 64 * 1024:                 # room for the multipart framing
            raise BadRequest(413, f"upload of {declared:,} bytes; the limit is {max_bytes:,}")
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise BadRequest(400, "send the image as multipart/form-data with the field 'image'")
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as exc:  # noqa: BLE001 - multipart parser errors: the client's fault, say why
            raise BadRequest(400, f"cannot read the form ({' '.join(str(exc).split()) or type(exc).__name__})") \
                from None
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
                try:
                    overrides[name] = kind(value)
                except ValueError:
                    raise BadRequest(400, f"{key}={value!r}: not {'an integer' if kind is int else 'a number'}") \
                        from None
        try:
            settings = captioner.settings(**overrides)
        except FsgrError as exc:
            raise BadRequest(400, str(exc)) from None
        x = captioner.preprocess(decode_upload(data, max_pixels))
        result = await batcher.caption(x, settings)
        body = describe(result, captioner.concept_name, background)
        body.update(decoding=asdict(settings), seconds=round(time.perf_counter() - start, 4))
        return JSONResponse(body)

    async def bad_request(request: Request, exc: BadRequest):
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    async def http_error(request: Request, exc):
        return JSONResponse({"error": getattr(exc, "detail", "error")}, status_code=getattr(exc, "status_code", 500))

    async def internal_error(request: Request, exc: Exception):
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    from starlette.exceptions import HTTPException

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = Starlette(routes=[Route("/", page), Route("/healthz", healthz),
                            Route("/api/caption", caption, methods=["POST"])],
                    exception_handlers={BadRequest: bad_request, HTTPException: http_error,
                                        Exception: internal_error},
                    lifespan=lifespan)
    app.state.batcher = batcher
    return app
