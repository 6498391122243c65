"""``python -m soniox_widget.local``: run the Soniox-compatible local server.

Point any Soniox client at the printed URL (e.g. ``SONIOX_WS_URL=ws://127.0.0.1:PORT/
transcribe-websocket``). The default engine is the offline recognizer.

Python and SDK clients (which send no Origin) connect as they are; a web page must be
allowed with ``--allow-origin https://app.example`` (any page the user has open could
otherwise drive the engine). With ``--require-key``, clients send the key as Soniox
takes it: the ``Authorization: Bearer`` header, the WebSocket subprotocols
``soniox-api-key, <key>`` (browsers), or, until 15 January 2027, ``api_key`` in the
start message.

As a service behind a load balancer: ``GET /healthz`` and ``/readyz`` need no key;
``--metrics`` adds Prometheus metrics at ``/metrics``; SIGTERM drains (no new sessions,
open ones get ``--drain-seconds`` to finish, the rest end with a 503 "restart the
request" so clients resume on another replica); one log line per session
(``--log-format json`` for JSON lines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .._serving import serve_until_signal
from ..access import AccessPolicy
from ..auth import KeyRing
from ..service.cli import add_service_arguments, check_metrics_available, configure_logging
from .server import LocalSonioxServer
from .shared import LocalEngineUnavailable, default_engine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soniox_widget.local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 0) or 0),
                        help="port (default: PORT, else a free port)")
    parser.add_argument("--require-key", metavar="KEY_ENV", default=None,
                        help="require clients to send the key stored in this env variable")
    parser.add_argument("--keys-file", metavar="PATH", default=None,
                        help="require each client to send its user's key: a file of "
                        "'user key' lines (one key per user, e.g. per JupyterHub user; the "
                        "session log names the user)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="also accept browser connections from this origin, e.g. "
                        "https://app.example (repeatable; '*' any; default: none, only "
                        "clients that send no Origin)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer to this Host name, e.g. a name behind a reverse "
                        "proxy (repeatable; default: the bound address, loopback names and "
                        "IP addresses)")
    parser.add_argument("--engine", choices=["whisper", "scripted"], default="whisper",
                        help="'whisper' (offline recognition, default) or 'scripted' "
                        "(deterministic words for testing clients; NOT transcription)")
    parser.add_argument("--script", default=None, help="words for the scripted engine")
    parser.add_argument("--bytes-per-word", type=int, default=2000,
                        help="audio bytes per word of the scripted engine (default 2000)")
    parser.add_argument("--ms-per-word", type=int, default=400,
                        help="made-up word length of the scripted engine (default 400)")
    add_service_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    if args.engine == "scripted":
        from .scripted_engine import ScriptedEngine

        engine = ScriptedEngine(args.script, bytes_per_word=args.bytes_per_word,
                                ms_per_word=args.ms_per_word)
    else:
        engine = default_engine()
    key: str | KeyRing | None = os.environ.get(args.require_key) if args.require_key else None
    if args.require_key and not key:
        raise SystemExit(f"--require-key {args.require_key}: that variable is not set")
    if args.keys_file:
        if key is not None:
            raise SystemExit("use --require-key or --keys-file, not both")
        try:
            key = KeyRing.from_file(args.keys_file)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--keys-file: {exc}") from None
    server = LocalSonioxServer(engine, host=args.host, port=args.port, api_key=key,
                               allowed_origins=args.allow_origin, allowed_hosts=args.allow_host,
                               max_sessions=args.max_sessions, metrics=args.metrics,
                               log_format=args.log_format)
    try:
        await serve_until_signal(
            server, lambda: f"Soniox-compatible server ({engine.label}) listening on {server.url}",
            drain_seconds=args.drain_seconds)
    finally:
        await engine.aclose()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:  # a bad --allow-origin/--allow-host fails here, before any engine loads
        AccessPolicy(bind_host=args.host, allowed_hosts=args.allow_host,
                     allowed_origins=args.allow_origin)
    except ValueError as exc:
        sys.exit(f"python -m soniox_widget.local: {exc}")
    if args.metrics:
        check_metrics_available("python -m soniox_widget.local")
    configure_logging(args.verbose, args.log_format)
    try:
        asyncio.run(serve(args))
    except LocalEngineUnavailable as exc:
        sys.exit(str(exc))
    except OSError as exc:
        sys.exit(f"cannot start the server: {exc}")


if __name__ == "__main__":
    main()
