"""Run rota's scheduled fires in Python.

A ``Worker`` attaches to a rota node over gRPC (``rota.v1.WorkerService``), says which handler
names it serves and how many fires it runs at once, and runs the fires the node pushes it::

    import asyncio
    from rota_worker import Worker

    worker = Worker(["127.0.0.1:7700"], worker_id="reports-1", slots=4)

    @worker.handler("report.daily")
    async def daily(ctx, args):
        ctx.log(f"report for {args['region']}, fire {ctx.fire_id}")
        return "sent"

    asyncio.run(worker.run())

A handler gets the fire's ``Context`` and the job's arguments (JSON: dict, list, str, number, bool
or None). What it returns (a string, or anything JSON can encode) is the run's output; an exception
fails the run with its message. When the node cancels the run (the job's timeout, or the node
stopping) the handler's task is cancelled (``asyncio.CancelledError``), and ``ctx.cancelled`` is
set. The node records every outcome; the worker needs no other access.

``run()`` reconnects with backoff, trying each address in turn, until ``stop()``; ``stop()`` stops
taking fires, lets the running ones finish (within ``grace``), then closes.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as _dt
import inspect
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Union

import grpc
from google.protobuf import json_format

from ._proto import worker_pb2 as pb
from ._proto import worker_pb2_grpc as pb_grpc

__all__ = ["Worker", "Context", "RotaWorkerError", "ConfigError", "__version__"]
__version__ = "0.1.0"

log = logging.getLogger("rota_worker")

# What the node keeps of one message's text (see proto: FireOutput.text, FireResult).
MAX_TEXT_BYTES = 64 * 1024

Handler = Callable[["Context", Any], Union[Awaitable[Any], Any]]


class RotaWorkerError(Exception):
    """Base of this package's errors."""


class ConfigError(RotaWorkerError, ValueError):
    """A worker or handler set up wrongly (names the setting)."""


def _valid_name(s: str) -> bool:
    return 0 < len(s) <= 128 and all(c.isascii() and (c.isalnum() or c in "._:-") for c in s)


def _clip(text: str) -> str:
    b = text.encode("utf-8")
    if len(b) <= MAX_TEXT_BYTES:
        return text
    return b[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")


@dataclass
class Context:
    """What a handler knows about the fire it runs."""

    fire_id: str
    """``<job id>@<scheduled ms>``: the same for every attempt (make the handler idempotent on it)."""
    execution_id: str
    job_id: str
    handler: str
    scheduled_at: _dt.datetime
    attempt: int
    epoch: int
    """The claiming master's fencing epoch (0 for a manual trigger)."""
    manual: bool
    node_id: str
    shard_index: int
    """Which shard of a sharded job's fire this run is, from 0 (a job that is not sharded: 0)."""
    shard_total: int
    """How many shards the fire fans out into (a job that is not sharded: 1)."""
    deadline: Optional[_dt.datetime]
    """When the job's timeout ends the run (None: no timeout)."""
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the node cancels the run."""
    _send: Callable[[pb.AttachRequest], None] = field(default=lambda m: None, repr=False)

    def log(self, text: str) -> None:
        """Streams a line of output to the node (kept in the execution's record, capped)."""
        if not text.endswith("\n"):
            text += "\n"
        self._send(pb.AttachRequest(output=pb.FireOutput(execution_id=self.execution_id, text=_clip(text))))


def _context(task: pb.FireTask, send: Callable[[pb.AttachRequest], None]) -> Context:
    deadline = task.deadline.ToDatetime(tzinfo=_dt.timezone.utc) if task.HasField("deadline") else None
    return Context(
        fire_id=task.fire_id,
        execution_id=task.execution_id,
        job_id=task.job_id,
        handler=task.handler,
        scheduled_at=task.scheduled_time.ToDatetime(tzinfo=_dt.timezone.utc),
        attempt=task.attempt,
        epoch=task.epoch,
        manual=task.manual,
        node_id=task.node_id,
        # A node older than sharding sends neither: shard 0 of 1.
        shard_index=task.shard_index,
        shard_total=task.shard_total or 1,
        deadline=deadline,
        _send=send,
    )


def _plain(v: Any) -> Any:
    """JSON from the wire's Value: integral numbers back to ints (the wire has only doubles)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _output(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


class _Session:
    """One attachment to one node: its outgoing queue and the fires it runs."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.running: Dict[str, asyncio.Task] = {}
        self.contexts: Dict[str, Context] = {}
        self.closed = False

    def send(self, msg: Optional[pb.AttachRequest]) -> None:
        """Queues a message (None: the end of the stream); from any thread (``ctx.log`` in a plain
        function runs in a worker thread, and asyncio's queue is for the loop's thread only)."""
        if self.closed:
            return
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self.outbox.put_nowait(msg)
        else:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, msg)

    async def requests(self, hello: pb.AttachRequest):
        yield hello
        while True:
            msg = await self.outbox.get()
            if msg is None:
                return
            yield msg


class Worker:
    """An external worker: serves handler names, runs the fires a rota node pushes it."""

    def __init__(
        self,
        targets: Union[str, Iterable[str]],
        *,
        worker_id: Optional[str] = None,
        slots: int = 1,
        tags: Optional[Dict[str, str]] = None,
        token: Optional[str] = None,
        tls: Optional[grpc.ChannelCredentials] = None,
        grace: float = 30.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.targets: List[str] = [targets] if isinstance(targets, str) else list(targets)
        if not self.targets:
            raise ConfigError("targets: give at least one node address (host:port)")
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        if not _valid_name(self.worker_id):
            raise ConfigError("worker_id: 1-128 characters of A-Z a-z 0-9 . _ : -")
        if not 1 <= slots <= 10_000:
            raise ConfigError("slots: 1 to 10000")
        self.slots = slots
        self.tags = dict(tags or {})
        for k, v in self.tags.items():
            if not (_valid_name(k) and _valid_name(v)):
                raise ConfigError(f"tags[{k!r}]: keys and values are 1-128 characters of A-Z a-z 0-9 . _ : -")
        self.token = token
        self.tls = tls
        self.grace = grace
        self.max_backoff = max_backoff
        self._handlers: Dict[str, Handler] = {}
        self._stopping: Optional[asyncio.Event] = None
        # Plain (non-async) handlers run here: one thread per slot.
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._session: Optional[_Session] = None
        self.node_id: Optional[str] = None
        """The node this worker is attached to now (None while it is not)."""

    def handler(self, name: str) -> Callable[[Handler], Handler]:
        """Registers a function (async or not) as the handler of ``name``."""

        def register(fn: Handler) -> Handler:
            self.register(name, fn)
            return fn

        return register

    def register(self, name: str, fn: Handler) -> None:
        if not _valid_name(name):
            raise ConfigError(f"handler {name!r}: 1-128 characters of A-Z a-z 0-9 . _ : -")
        if name in ("noop", "sleep", "http", "shell"):
            raise ConfigError(f"handler {name!r}: a built-in handler's name")
        if name in self._handlers:
            raise ConfigError(f"handler {name!r}: registered twice")
        self._handlers[name] = fn

    async def run(self) -> None:
        """Attaches and runs fires until ``stop()``, reconnecting with backoff (trying each target
        in turn) when a stream ends."""
        if not self._handlers:
            raise ConfigError("handlers: register at least one handler before run()")
        self._stopping = asyncio.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="rota-handler")
        backoff, i = 0.2, 0
        while not self._stopping.is_set():
            target = self.targets[i % len(self.targets)]
            i += 1
            try:
                attached = await self._attach(target)
                if attached:
                    backoff = 0.2
            except grpc.aio.AioRpcError as e:
                # A bad hello, a refused token, or another process attached with this worker id
                # (ALREADY_EXISTS): retrying would not help, or would take the id back and forth.
                if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
                                grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.ALREADY_EXISTS):
                    raise RotaWorkerError(f"node {target} refused this worker: {e.code().name}: {e.details()}") from e
                log.warning("rota worker %s: stream to %s ended: %s %s", self.worker_id, target, e.code().name, e.details())
            if self._stopping.is_set():
                break
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, self.max_backoff)
        self._pool.shutdown(wait=False)

    async def stop(self) -> None:
        """Stops taking fires, lets the running ones finish (within ``grace``), then closes the
        stream and waits (a few seconds at most) for the node to end it, so the last results
        reach it."""
        if self._stopping is None:
            return
        s = self._session
        if s is not None:
            s.send(pb.AttachRequest(drain=pb.Drain()))
            deadline = asyncio.get_running_loop().time() + self.grace
            # Until none runs: a fire pushed before the node read the drain runs too.
            while s.running and asyncio.get_running_loop().time() < deadline:
                left = deadline - asyncio.get_running_loop().time()
                await asyncio.wait(list(s.running.values()), timeout=left)
        self._stopping.set()

    async def _attach(self, target: str) -> bool:
        channel = (grpc.aio.secure_channel(target, self.tls) if self.tls else grpc.aio.insecure_channel(target))
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
        session = _Session()
        hello = pb.AttachRequest(hello=pb.WorkerHello(
            worker_id=self.worker_id, handlers=sorted(self._handlers), slots=self.slots, tags=self.tags,
            sdk=f"rota-python {__version__}"))
        attached = False
        try:
            async with channel:
                call = pb_grpc.WorkerServiceStub(channel).Attach(session.requests(hello), metadata=metadata)
                beat: Optional[asyncio.Task] = None
                stop_wait: Optional[asyncio.Future] = asyncio.ensure_future(self._stopping.wait())
                # A node silent for its session TTL (paused, cut off) is gone: the worker goes to
                # another one. Until the welcome says the TTL, the hello's own deadline applies.
                ttl = 15.0
                nxt: Optional[asyncio.Future] = None
                try:
                    reader = call.__aiter__()
                    while True:
                        if nxt is None:
                            nxt = asyncio.ensure_future(reader.__anext__())
                        waiting = {nxt} if stop_wait is None else {nxt, stop_wait}
                        done, _ = await asyncio.wait(waiting, timeout=ttl, return_when=asyncio.FIRST_COMPLETED)
                        if not done:
                            nxt.cancel()
                            call.cancel()
                            if stop_wait is not None:
                                log.warning("rota worker %s: node %s silent for %.1f s; attaching elsewhere",
                                            self.worker_id, target, ttl)
                            return attached
                        if nxt not in done:
                            # stop(): the stream is closed from this side (the last results are
                            # queued before the end); the node then ends it, or a few seconds pass.
                            stop_wait, ttl = None, 5.0
                            session.send(None)
                            continue
                        try:
                            msg = nxt.result()
                        except StopAsyncIteration:
                            return attached
                        nxt = None
                        kind = msg.WhichOneof("msg")
                        if kind == "welcome":
                            attached = True
                            self._session = session
                            self.node_id = msg.welcome.node_id
                            interval = max(msg.welcome.heartbeat_interval_ms, 100) / 1000
                            ttl = max(msg.welcome.session_ttl_ms, 200) / 1000
                            beat = asyncio.ensure_future(self._beat(session, interval))
                            log.info("rota worker %s attached to node %s", self.worker_id, self.node_id)
                        elif kind == "fire":
                            self._start(session, msg.fire)
                        elif kind == "cancel":
                            self._cancel(session, msg.cancel.execution_id, msg.cancel.reason)
                        elif kind == "rejected":
                            log.warning("rota worker %s: node refused a message about %r: %s",
                                        self.worker_id, msg.rejected.execution_id, msg.rejected.reason)
                finally:
                    if stop_wait is not None:
                        stop_wait.cancel()
                    if beat is not None:
                        beat.cancel()
        finally:
            # The session is over: its fires follow their jobs' recovery policy on the node, so
            # their handlers here stop (a result could no longer be recorded).
            session.closed = True
            for task in list(session.running.values()):
                task.cancel()
            if self._session is session:
                self._session = None
                self.node_id = None

    async def _beat(self, session: _Session, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            session.send(pb.AttachRequest(heartbeat=pb.Heartbeat()))

    def _start(self, session: _Session, task: pb.FireTask) -> None:
        ctx = _context(task, session.send)
        fn = self._handlers.get(task.handler)
        session.contexts[task.execution_id] = ctx
        session.running[task.execution_id] = asyncio.ensure_future(self._run(session, ctx, fn, task))

    async def _run(self, session: _Session, ctx: Context, fn: Optional[Handler], task: pb.FireTask) -> None:
        result = pb.FireResult(execution_id=ctx.execution_id)
        try:
            if fn is None:
                raise RotaWorkerError(f"this worker has no handler {task.handler!r}")
            args = _plain(json_format.MessageToDict(task.args)) if task.HasField("args") else None
            session.send(pb.AttachRequest(started=pb.FireStarted(execution_id=ctx.execution_id)))
            if inspect.iscoroutinefunction(fn):
                value = await fn(ctx, args)
            else:
                thread = asyncio.get_running_loop().run_in_executor(self._pool, fn, ctx, args)
                try:
                    value = await asyncio.shield(thread)
                except asyncio.CancelledError:
                    # A thread cannot be stopped: the answer (which frees the slot and, for a
                    # `forbid` job, the lock) waits until it ends, however often it is cancelled.
                    ctx.cancelled.set()
                    while not thread.done():
                        try:
                            await asyncio.wait({thread})
                        except asyncio.CancelledError:
                            pass
                    raise
                if inspect.isawaitable(value):
                    value = await value
            result.success = True
            result.output = _clip(_output(value))
        except asyncio.CancelledError:
            # Cancelled by the node or because the session ended. The node records the outcome
            # (`timed_out`) and frees the fire's slot on this answer, sent once the handler stopped
            # (nothing is sent when the session ended: it is gone).
            ctx.cancelled.set()
            session.running.pop(ctx.execution_id, None)
            session.contexts.pop(ctx.execution_id, None)
            session.send(pb.AttachRequest(result=pb.FireResult(
                execution_id=ctx.execution_id, success=False, error="cancelled")))
            return
        except Exception as e:  # the handler's failure is the run's outcome
            result.success = False
            result.error = _clip(f"{type(e).__name__}: {e}")
        finally:
            session.running.pop(ctx.execution_id, None)
            session.contexts.pop(ctx.execution_id, None)
        session.send(pb.AttachRequest(result=result))

    def _cancel(self, session: _Session, execution_id: str, reason: str) -> None:
        ctx = session.contexts.get(execution_id)
        if ctx is not None:
            ctx.cancelled.set()
        task = session.running.get(execution_id)
        if task is not None:
            log.info("rota worker %s: fire %s cancelled by the node: %s", self.worker_id, execution_id, reason)
            task.cancel()
