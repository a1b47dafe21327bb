"""``cmft serve``: the gallery search service (JSON API and web page) over an index folder, run by uvicorn.

FastAPI and uvicorn (the ``serve`` extra) are imported inside the command.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated, Optional

import typer

from cmft.cli._common import _fail, err


def serve(
    index: Annotated[str, typer.Argument(help="a gallery built by `cmft index`: store folder, Milvus Lite file (*.db) or Milvus URI")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="checkpoint that embeds uploaded queries (default: the one the index records)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="largest upload (each frame and all frames together), in MB")] = 20.0,
    max_frames: Annotated[int, typer.Option(help="most frames in one uploaded query")] = 64,
    device: Annotated[str, typer.Option(help="device for embedding uploads: cpu, cuda, cuda:1, auto")] = "cpu",
) -> None:
    """Serve cross-modal search over a gallery index: a web page at / and a JSON API (schema at /openapi.json)."""
    try:
        from cmft.serve.app import create_app
        import uvicorn
    except ImportError as e:
        _fail(f"cmft serve needs the serve extra (pip install 'cmft[serve]'): {e}")
    from cmft.search.gallery import IndexFormatError

    if not 0 < port < 65536:
        _fail(f"--port must be between 1 and 65535, got {port}")
    if max_upload_mb <= 0 or max_frames < 1:
        _fail("--max-upload-mb must be positive and --max-frames at least 1")
    if checkpoint is not None and not checkpoint.is_file():
        _fail(f"{checkpoint}: checkpoint not found")
    sock = _bind(host, port)  # before the gallery opens: a busy port fails at once, and nothing says "serving" first
    try:
        application = create_app(index, checkpoint=checkpoint, device=device, max_upload_mb=max_upload_mb, max_frames=max_frames)
    except (IndexFormatError, FileNotFoundError, OSError) as e:
        _fail(str(e))
    health = application.state.health()
    if not health["uploads"]:
        err.print("note: upload search is off (no checkpoint found: the index records "
                  f"{health['checkpoint'] or 'none'}; pass --checkpoint); search by gallery id works")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"note: listening on {host}: anyone who can reach it can search the gallery and upload frames (no authentication)")
    err.print(f"serving {health['entries']} tracklets from {index} at http://{host}:{port}/ (Ctrl+C stops)")
    uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="info")).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``, or a clear error (exit 2) when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        _fail(f"--host {host}: not an address of this machine ({e.strerror})")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait for TIME_WAIT
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            _fail(f"port {port} is in use on {host} (another cmft serve?); stop it or pick another with --port")
        _fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    sock.set_inheritable(True)
    return sock


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)
