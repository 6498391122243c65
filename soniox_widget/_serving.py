"""What the two WebSocket servers (local engine, proxy) share: owning their tasks.

Each server owns a listener and the handler task of every open connection;
stopping it closes the listener and every connection, and cancels and awaits
every handler, so nothing outlives the server. The local engine listens with
websockets' asyncio server (:meth:`WebSocketService._listen`); the proxy, which
only relays frames, with the sans-I/O transport of :mod:`soniox_widget.transport`
(:meth:`WebSocketService._listen_frames`). :class:`IdleWatchdog` closes connections
whose client went silent, at no cost per message.

Every server is also a service (:mod:`soniox_widget.service`): it answers health checks
before anything else, and :meth:`WebSocketService.drain` (SIGTERM on the command line)
stops taking sessions, lets the open ones finish, then ends the rest with the error that
tells clients to restart the request elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from . import transport
from ._deadline import DeadlineTimer
from .service import ServiceState

logger = logging.getLogger(__name__)


class WebSocketService:
    """Base of a server class: call :meth:`_listen` from ``start()``.

    ``service`` holds readiness, drain state and the per-session accounting; the server
    answers ``service.respond(request)`` first in its request hook, and implements
    :meth:`_end_for_restart` for the end of a drain.
    """

    #: Seconds the sessions ended at the end of a drain get to close before stop().
    RESTART_GRACE = 5.0

    def __init__(self, host: str, port: int, service: ServiceState) -> None:
        self.host = host
        self.port = port
        self.service = service
        self._server: Server | transport.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._no_handlers = asyncio.Event()
        self._no_handlers.set()

    async def start(self) -> Any:
        raise NotImplementedError

    async def _end_for_restart(self) -> int:
        """Send every open session the 503 "restart the request" and close it; returns
        how many were ended (their handlers then return on their own)."""
        raise NotImplementedError

    async def drain(self, seconds: float, hurry: asyncio.Event | None = None) -> None:
        """Stop gracefully: not ready and no new session from now on; open sessions get
        up to ``seconds`` to finish (or until ``hurry`` is set); the rest are ended with a
        503 "restart the request", so clients resume on another replica; then stop.

        A balancer learns from ``/readyz`` (503 from now on) to send new sessions
        elsewhere; one that still sends a session here meanwhile gets HTTP 503, which
        it can retry on another server (HAProxy: ``retry-on 503``).
        """
        self.service.begin_drain()
        await self._wait_for_handlers(seconds, hurry)
        if self._handlers:
            ended = await self._end_for_restart()
            logger.info("drain: ended %d session(s) after %g s with a 503 (restart the "
                        "request)", ended, seconds)
            await self._wait_for_handlers(self.RESTART_GRACE, None)
        await self.stop()

    async def _wait_for_handlers(self, timeout: float, hurry: asyncio.Event | None) -> None:
        """Until every handler returned, ``timeout`` passed or ``hurry`` was set."""
        if not self._handlers or timeout <= 0:
            return
        waiters = {asyncio.ensure_future(self._no_handlers.wait())}
        if hurry is not None:
            waiters.add(asyncio.ensure_future(hurry.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    def _tracked(self, handler: Callable[[Any], Awaitable[None]]
                 ) -> Callable[[Any], Awaitable[None]]:
        """``handler``, with its task known to :meth:`stop` while it runs."""
        async def tracked(ws: Any) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._handlers.add(task)
            self._no_handlers.clear()
            try:
                await handler(ws)
            finally:
                self._handlers.discard(task)
                if not self._handlers:
                    self._no_handlers.set()
        return tracked

    async def _listen(self, handler: Callable[[ServerConnection], Awaitable[None]],
                      **options: Any) -> None:
        self._server = await serve(self._tracked(handler), self.host, self.port, **options)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def _listen_frames(self, handler: Callable[[transport.ServerConnection],
                                                     Awaitable[None]],
                             **options: Any) -> None:
        """:meth:`_listen` on :func:`soniox_widget.transport.serve`: frames by callback."""
        self._server = await transport.serve(self._tracked(handler), self.host, self.port,
                                             **options)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for their handlers."""
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            await server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class IdleWatchdog:
    """Ends a connection whose client has sent nothing for ``timeout`` seconds.

    The owner calls :meth:`touch` for each frame it receives (one clock read, no
    task, no timer). One ``loop.call_at`` timer does the checking: it is re-armed only
    when it fires, for whatever time is left since the last touch, so a busy
    connection costs one timer callback per ``timeout`` seconds. When the deadline
    has really passed, ``on_expire()`` runs once, as a task this watchdog owns; it
    sends the error reply and closes the connection, which ends the owner's wait (a
    pending ``recv()`` raises ``ConnectionClosed``; the proxy awaits the connection's
    close).

    Don't wrap ``recv()`` in ``asyncio.wait_for`` instead: on Python 3.10/3.11 it can
    swallow a cancellation, and it costs a timer (and a task) per message.

    Example::

        watchdog = IdleWatchdog(20.0, send_408_and_close)
        watchdog.start()
        try:
            while True:
                message = await ws.recv()
                if watchdog.expired:
                    break
                watchdog.touch()
                ...
        finally:
            await watchdog.aclose()
    """

    def __init__(self, timeout: float | None,
                 on_expire: Callable[[], Awaitable[None]]) -> None:
        self.timeout = timeout
        self._on_expire = on_expire
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._watching = False
        self._timer = DeadlineTimer(self._loop, self._due, self._check)
        self._expiry: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.timeout is not None and self.timeout > 0

    @property
    def expired(self) -> bool:
        """True once the deadline passed (the connection is being closed)."""
        return self._expiry is not None

    def start(self) -> None:
        """Start counting from now (no effect when disabled or already running)."""
        self.touch()
        if self.enabled and self._expiry is None:
            self._watching = True
            self._timer.arm()

    def touch(self) -> None:
        """The client is active now: the deadline moves to ``now + timeout``."""
        self._last = self._loop.time()

    def stop(self) -> None:
        """Stop watching (e.g. once the client ended its stream); idempotent."""
        self._watching = False
        self._timer.cancel()

    async def aclose(self) -> None:
        """Stop watching and wait for a running ``on_expire``; idempotent."""
        self.stop()
        task = self._expiry
        if task is None:
            return
        try:
            if not task.done():
                await asyncio.wait({task})
        finally:
            if not task.done():  # we were cancelled while waiting: don't leave it behind
                task.cancel()
        if not task.cancelled() and task.exception() is not None:
            logger.warning("closing an idle connection failed: %r", task.exception())

    def _due(self) -> float | None:
        if not self._watching or self._expiry is not None or self.timeout is None:
            return None
        return self._last + self.timeout

    def _check(self, now: float, _due: float) -> None:
        due = self._due()
        if due is None:
            return
        if now < due:  # touched since: look again then
            self._timer.arm()
            return
        self._watching = False
        self._expiry = self._loop.create_task(self._on_expire(), name="idle watchdog")


def run_main(main: Coroutine[Any, Any, None], loop: str = "auto") -> None:
    """Run a command line's ``main`` coroutine on the chosen event loop.

    ``"uvloop"`` (libuv's loop; ``pip install uvloop``) moves each message with far
    less interpreter work than asyncio's own loop, which matters to a server that
    only relays; ``"asyncio"`` is the standard loop; ``"auto"`` takes uvloop when it
    is installed.
    """
    if loop not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"unknown event loop {loop!r}; expected auto, asyncio or uvloop")
    uvloop: Any = None
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                main.close()  # never awaited: say so quietly, not with a warning
                raise
    if uvloop is None:
        asyncio.run(main)
    else:
        logger.debug("running on uvloop %s", uvloop.__version__)
        uvloop.run(main)


async def serve_until_signal(service: WebSocketService, banner: Callable[[], str],
                             drain_seconds: float = 0.0) -> None:
    """Run a service from the command line until SIGINT or SIGTERM.

    SIGTERM (what systemd, Docker and Kubernetes send to stop a service) drains for up
    to ``drain_seconds`` (:meth:`WebSocketService.drain`); SIGINT (Ctrl-C), or a second
    signal during a drain, stops at once.
    """
    async with service:
        print(banner(), flush=True)
        loop = asyncio.get_running_loop()
        received: asyncio.Queue[signal.Signals] = asyncio.Queue()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, received.put_nowait, sig)
        try:
            first = await received.get()
            if first == signal.SIGTERM and drain_seconds > 0:
                hurry = asyncio.Event()
                drain = asyncio.ensure_future(service.drain(drain_seconds, hurry))
                second = asyncio.ensure_future(received.get())
                try:
                    await asyncio.wait({drain, second}, return_when=asyncio.FIRST_COMPLETED)
                    hurry.set()  # a second signal: end the sessions now
                    await drain
                finally:
                    second.cancel()
                    await asyncio.gather(second, return_exceptions=True)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
