"""``python -m soniox_widget.proxy`` (or ``soniox-proxy``): the standalone proxy server.

Open http://127.0.0.1:3001/ for the recording page. The key is read from
``SONIOX_API_KEY`` or a ``.env`` file and never leaves this server. Without a key
the offline local engine is used (``pip install 'soniox-widget[local]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .._serving import serve_until_signal
from ..backend import choose_backend
from ..config import SonioxConfig
from ..errors import ConfigError, MissingAPIKeyError
from ..local.shared import LocalEngineUnavailable
from .server import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES, DEFAULT_PORT, ProxyServer


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be between 0 and 65535")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("seconds must be 0 or more")
    return seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soniox-proxy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes your key's "
                   "spending to anyone who can reach this machine)")
    p.add_argument("--port", type=_port, default=None,
                   help=f"port (default: PORT environment variable, else {DEFAULT_PORT})")
    p.add_argument("--engine", choices=["auto", "soniox", "local"], default="auto",
                   help="auto: Soniox with a key, else the offline local engine")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept browser connections from this origin "
                   "(repeatable; default: same origin only)")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES)
    p.add_argument("--idle-timeout", type=_seconds, default=DEFAULT_IDLE_TIMEOUT,
                   metavar="SECONDS",
                   help="close a client that sends no audio and no keepalive for this long, "
                   f"with a 408 error (default {DEFAULT_IDLE_TIMEOUT:g}; 0 never closes it)")
    p.add_argument("--model", default=None, help="Soniox model (default: current real-time)")
    p.add_argument("--language-hints", default="", help="comma-separated, e.g. en,de")
    p.add_argument("--enable-endpoint-detection", action="store_true")
    p.add_argument("--enable-speaker-diarization", action="store_true")
    p.add_argument("--enable-language-identification", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> ProxyServer:
    options: dict[str, object] = {
        "language_hints": [x.strip() for x in args.language_hints.split(",") if x.strip()],
        "enable_endpoint_detection": args.enable_endpoint_detection,
        "enable_speaker_diarization": args.enable_speaker_diarization,
        "enable_language_identification": args.enable_language_identification,
    }
    if args.model:
        options["model"] = args.model
    config = SonioxConfig.from_options(options)
    port = args.port if args.port is not None else _port(os.environ.get("PORT") or
                                                         str(DEFAULT_PORT))
    backend = choose_backend(args.engine, model=config.model)
    return ProxyServer(backend, config, host=args.host, port=port,
                       allowed_origins=args.allow_origin, max_frame_bytes=args.max_frame_bytes,
                       idle_timeout=args.idle_timeout or None)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = build(args)
        asyncio.run(serve_until_signal(
            server, lambda: f"soniox-proxy ({server.backend.label}) serving {server.url}"))
    except (MissingAPIKeyError, LocalEngineUnavailable, ConfigError) as exc:
        sys.exit(f"soniox-proxy: {exc}")
    except OSError as exc:
        sys.exit(f"soniox-proxy: cannot listen on {args.host}: {exc} "
                 "(is the port in use? choose another with --port)")


if __name__ == "__main__":
    main()
