"""`fsgr serve --checkpoint CKPT [--host 127.0.0.1] [--port 8000]`: the web page and JSON API (fsgr.serving.server).

Needs the `serve` extra (`pip install fsgr[serve]`: starlette, uvicorn, python-multipart). `--model DIR` serves an
exported folder (safetensors, or onnx on onnxruntime) instead of a checkpoint. `--precision` fixes the decoding
precision (default: the trainer's; the API's answers and /healthz say which); each request's form fields set its
decoding.
"""

from __future__ import annotations

from fsgr.commands.decoding_args import add_precision_argument


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint written by `fsgr train`")
    source.add_argument("--model", metavar="DIR",
                        help="a folder written by `fsgr export` (safetensors, or onnx on onnxruntime)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one, printed at start)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    add_precision_argument(parser)
    parser.add_argument("--max-batch", type=int, default=16, help="most images decoded together")
    parser.add_argument("--batch-window-ms", type=float, default=5.0,
                        help="how long a request waits for others to join its batch")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MiB")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest image in pixels (w x h), checked before decoding; replaces PIL's own limit")
    parser.add_argument("--decode-workers", type=int, default=None,
                        help="threads that decode uploads (default: the CPUs, at most 4)")


def main(args) -> int:
    import importlib.util
    import sys

    from fsgr.commands import checks
    from fsgr.errors import ConfigError

    missing = [m for m in ("starlette", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"fsgr serve needs {', '.join(missing)}: pip install 'fsgr[serve]'")
    if args.max_batch < 1 or args.batch_window_ms < 0 or args.max_upload_mb <= 0 or args.max_pixels < 1:
        raise ConfigError("--max-batch, --max-upload-mb and --max-pixels must be positive, --batch-window-ms >= 0")
    checks.in_range("--port", args.port, 0, 65535)
    checks.in_range("--decode-workers", args.decode_workers, 1)
    sock = listen(args.host, args.port)          # before loading the model: a port in use costs no wait
    import uvicorn

    from fsgr.commands.caption import load_captioner
    from fsgr.serving.server import create_app

    with sock:
        captioner = load_captioner(args)
        app = create_app(captioner, max_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                         max_batch=args.max_batch, window_ms=args.batch_window_ms,
                         decode_workers=args.decode_workers)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"fsgr serve: http://{shown}:{port}/ (POST /api/caption, GET /healthz; decoding in "
              f"{captioner.precision})", file=sys.stderr, flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def listen(host: str, port: int):
    """A socket bound to host:port (uvicorn listens on it). ConfigError for a host that is no address of this
    machine; CouldNotBind (exit status 3) when the address is taken or not ours to use."""
    import errno
    import socket

    from fsgr.errors import ConfigError, CouldNotBind

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r}: not an address to listen on ({getattr(exc, 'strerror', None) or exc})") \
            from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)      # as uvicorn: restart over TIME_WAIT sockets
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host {host!r}: not an address of this machine ({exc.strerror})") from None
        raise CouldNotBind(f"could not bind {host}:{port} ({exc.strerror}): another server may be using it; "
                           f"choose another --port") from None
    return sock
