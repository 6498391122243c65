"""What the two command lines share as services: their options and their logging.

Logs are text lines, or one JSON object per line (``--log-format json``).

A log shipper (journald → Loki, Docker's json-file, Kubernetes) reads JSON lines without
a parser of its own. The per-session lines (:data:`~.lifecycle.session_log`) are already
JSON objects in that format; they are merged with the time and level rather than nested,
so ``jq 'select(.event == "session_end")'`` works on the whole log.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .lifecycle import session_log

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLineFormatter(logging.Formatter):
    """Each record as one JSON object: ``ts``, ``level``, ``logger`` and the message."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        fields = None
        if record.name == session_log.name and message.startswith("{"):
            try:
                fields = json.loads(message)
            except ValueError:
                fields = None
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = message
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


def configure_logging(verbose: bool, log_format: str) -> None:
    """The root logger for a command line: INFO (DEBUG with ``-v``) to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        handlers=[handler], force=True)


def add_service_arguments(parser: argparse.ArgumentParser, *, max_sessions: bool = True) -> None:
    """``--metrics``, ``--drain-seconds``, ``--log-format`` and (unless the command line
    has its own) ``--max-sessions``."""
    if max_sessions:
        parser.add_argument("--max-sessions", type=positive_int, default=None, metavar="N",
                            help="sessions at once; more get a 429 error and /readyz says "
                            "not ready (default: no limit)")
    parser.add_argument("--metrics", action="store_true",
                        help="serve Prometheus metrics at /metrics (no token needed: keep "
                        "the port on a private network)")
    parser.add_argument("--drain-seconds", type=seconds, default=30.0, metavar="SECONDS",
                        help="on SIGTERM, let open sessions finish for this long, then end "
                        "them with a 503 'restart the request' (default 30; 0: at once)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="log lines as text or one JSON object per line (default text)")


def positive_int(value: str) -> int:
    """argparse type: a whole number, 1 or more."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def seconds(value: str) -> float:
    """argparse type: a number of seconds, 0 or more."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError("seconds must be 0 or more")
    return seconds


def check_metrics_available(prog: str) -> None:
    """Exit with what to install when ``--metrics`` cannot work."""
    from .metrics import MetricsUnavailable, ServiceMetrics

    try:
        ServiceMetrics("check")
    except MetricsUnavailable as exc:
        sys.exit(f"{prog}: {exc}")
