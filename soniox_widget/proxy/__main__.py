"""``python -m soniox_widget.proxy`` (or ``soniox-proxy``): the standalone proxy server.

Open http://127.0.0.1:3001/ for the recording page. The key is read from
``SONIOX_API_KEY`` or a ``.env`` file and never leaves this server. Without a key
the offline local engine is used (``pip install 'soniox-widget[local]'``).

Bound beyond this machine (``--host 0.0.0.0``) the proxy requires an access token,
like Jupyter: it makes one and prints the page's URL with ``?token=...`` at start-up
(choose it with ``--token`` or SONIOX_PROXY_TOKEN). Other machines open the page by
this machine's address, allowed with ``--allow-host ADDRESS``.

As a service behind a load balancer: ``GET /healthz`` and ``/readyz`` need no token;
``--metrics`` adds Prometheus metrics at ``/metrics``; SIGTERM drains (``--drain-seconds``);
one log line per session (``--log-format json``). Soniox clients (the widget's kernel,
``transcribe_file``) connect at ``/transcribe-websocket`` with the token as their key.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import sys

from .._serving import run_main, serve_until_signal
from ..access import is_loopback
from ..backend import choose_backend
from ..config import SonioxConfig
from ..errors import ConfigError, MissingAPIKeyError
from ..local.shared import LocalEngineUnavailable
from ..service.cli import (
    add_service_arguments,
    check_metrics_available,
    configure_logging,
    positive_int,
    seconds,
)
from .server import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PORT,
    TOKEN_ENV_VAR,
    ProxyServer,
)


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be between 0 and 65535")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soniox-proxy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; any other address requires "
                   "an access token, made and printed at start-up unless --token is given)")
    p.add_argument("--port", type=_port, default=None,
                   help=f"port (default: PORT environment variable, else {DEFAULT_PORT})")
    p.add_argument("--engine", choices=["auto", "soniox", "local"], default="auto",
                   help="auto: Soniox with a key, else the offline local engine")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept browser connections from this origin "
                   "(repeatable; default: same origin only)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this Host name, e.g. this machine's LAN "
                   "address or a reverse proxy's public name (repeatable; default: the "
                   "bound address and loopback names only)")
    access = p.add_mutually_exclusive_group()
    access.add_argument("--token", default=None, metavar="TOKEN",
                        help="the access token every request must carry (default: "
                        f"{TOKEN_ENV_VAR}, else a new one when --host is not loopback)")
    access.add_argument("--no-token", action="store_true",
                        help="require no token even beyond loopback; only behind a gateway "
                        "that authenticates its users")
    p.add_argument("--max-sessions", type=positive_int, default=DEFAULT_MAX_SESSIONS,
                   metavar="N", help="sessions allowed at once; more clients get a 429 "
                   f"error (default {DEFAULT_MAX_SESSIONS})")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES)
    p.add_argument("--idle-timeout", type=seconds, default=DEFAULT_IDLE_TIMEOUT,
                   metavar="SECONDS",
                   help="close a client that sends no audio and no keepalive for this long, "
                   f"with a 408 error (default {DEFAULT_IDLE_TIMEOUT:g}; 0 never closes it)")
    p.add_argument("--compression", choices=["none", "deflate"], default="none",
                   help="permessage-deflate on both legs (default none: the audio does not "
                   "compress and replies are small, so deflate mostly costs CPU)")
    p.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                   help="event loop (default auto: uvloop when installed, which relays each "
                   "message with much less CPU; pip install 'soniox-widget[proxy]')")
    p.add_argument("--model", default=None, help="Soniox model (default: current real-time)")
    p.add_argument("--language-hints", default="", help="comma-separated, e.g. en,de")
    p.add_argument("--enable-endpoint-detection", action="store_true")
    p.add_argument("--enable-speaker-diarization", action="store_true")
    p.add_argument("--enable-language-identification", action="store_true")
    add_service_arguments(p, max_sessions=False)
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
                       allowed_hosts=args.allow_host, allowed_origins=args.allow_origin,
                       token=_token(args), require_token=not args.no_token,
                       max_sessions=args.max_sessions, max_frame_bytes=args.max_frame_bytes,
                       idle_timeout=args.idle_timeout or None,
                       compression=None if args.compression == "none" else args.compression,
                       metrics=args.metrics, log_format=args.log_format)


def _token(args: argparse.Namespace) -> str | None:
    """--token, else SONIOX_PROXY_TOKEN, else a new one when bound beyond loopback."""
    if args.no_token:
        return None
    token = args.token or os.environ.get(TOKEN_ENV_VAR) or None
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(32)
    return token


def banner(server: ProxyServer) -> str:
    """What the command line prints once at start-up: the URL to open, with its token.

    The only place the token is shown (as Jupyter shows its own); logs never carry it.
    """
    lines = [f"soniox-proxy ({server.backend.label}) serving {server.page_url}"]
    if server.host.strip("[]") in ("", "0.0.0.0", "::") and not server.access.allowed_hosts:
        lines.append("  (all interfaces: other machines use this machine's address instead "
                     "of 127.0.0.1; allow it with --allow-host ADDRESS)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.verbose, args.log_format)
    if args.metrics:
        check_metrics_available("soniox-proxy")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        sys.exit("soniox-proxy: --loop uvloop needs uvloop (pip install uvloop)")
    try:
        server = build(args)  # ValueError: a bad --allow-host, --allow-origin or --token
    except (MissingAPIKeyError, LocalEngineUnavailable, ConfigError, ValueError) as exc:
        sys.exit(f"soniox-proxy: {exc}")
    try:
        run_main(serve_until_signal(server, lambda: banner(server),
                                    drain_seconds=args.drain_seconds), args.loop)
    except (MissingAPIKeyError, LocalEngineUnavailable, ConfigError) as exc:
        sys.exit(f"soniox-proxy: {exc}")
    except OSError as exc:
        sys.exit(f"soniox-proxy: cannot listen on {args.host}: {exc} "
                 "(is the port in use? choose another with --port)")


if __name__ == "__main__":
    main()
