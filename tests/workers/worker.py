#!/usr/bin/env python3
"""The external worker the tests run (tests/workers.rs): a real process built on the Python SDK.

Handlers: `py.echo` (logs a line, returns its context and arguments as JSON), `py.sleep` (sleeps
args.ms, noting a cancel), `py.block` (a plain function sleeping args.ms on a thread: a cancel
cannot stop it), `py.fail` (raises), `py.chaos` (the chaos runner's side-log handler). Every start and end is appended to ROTA_SIDELOG
(tab-separated: S|E, execution, fire, attempt, worker) for the tests to check against rota's records.
Usage: worker.py TARGET[,TARGET...] WORKER_ID SLOTS [TOKEN]
"""
import asyncio
import logging
import os
import signal
import sys
import time

from rota_worker import Worker

targets, worker_id, slots = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
token = sys.argv[4] if len(sys.argv) > 4 else None
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
# ROTA_WORKER_TAGS: "region=eu,gpu=true"
tags = dict(kv.split("=", 1) for kv in os.environ.get("ROTA_WORKER_TAGS", "").split(",") if kv)
worker = Worker(targets, worker_id=worker_id, slots=slots, token=token, grace=10, tags=tags)
SIDELOG = os.environ.get("ROTA_SIDELOG")


def note(kind, ctx, extra=""):
    if SIDELOG:
        with open(SIDELOG, "a") as f:
            f.write(f"{kind}\t{ctx.execution_id}\t{ctx.fire_id}\t{ctx.attempt}\t{worker_id}\t{extra}\n")


@worker.handler("py.echo")
async def echo(ctx, args):
    note("S", ctx)
    ctx.log(f"hello from {worker_id}")
    out = {"fire_id": ctx.fire_id, "job_id": ctx.job_id, "attempt": ctx.attempt, "epoch": ctx.epoch,
           "manual": ctx.manual, "node_id": ctx.node_id, "scheduled_ms": int(ctx.scheduled_at.timestamp() * 1000),
           "deadline": ctx.deadline is not None, "args": args, "worker": worker_id,
           "shard_index": ctx.shard_index, "shard_total": ctx.shard_total}
    note("E", ctx)
    return out


@worker.handler("py.sleep")
async def sleep(ctx, args):
    note("S", ctx)
    ctx.log(f"sleeping {args['ms']} ms on {worker_id}")
    try:
        await asyncio.sleep(args["ms"] / 1000)
    except asyncio.CancelledError:
        note("C", ctx)
        raise
    note("E", ctx)
    return f"slept on {worker_id}"


@worker.handler("py.chaos")
async def chaos(ctx, args):
    """The chaos runner's side-log handler, in the runner's format (src/chaos.rs), plus the worker:
    `S job sched exec node epoch attempt now_ms worker`, then `E exec now_ms`."""
    now = lambda: int(time.time() * 1000)
    sched = int(ctx.scheduled_at.timestamp() * 1000)
    # A manual fire's own mark (the runner's TriggerJob args), as the nodes' handler notes it.
    mark = (args or {}).get("mark") if isinstance(args, dict) else None
    if isinstance(mark, str):
        append(f"M\t{ctx.execution_id}\t{mark}\n")
    append(f"S\t{ctx.job_id}\t{sched}\t{ctx.execution_id}\t{ctx.node_id}\t{ctx.epoch}\t{ctx.attempt}\t{now()}\t{worker_id}\n")
    sleeping = asyncio.ensure_future(asyncio.sleep(((args or {}).get("ms") or 0) / 1000))
    cancelled = False
    while not sleeping.done():
        try:
            await asyncio.shield(sleeping)
        except asyncio.CancelledError:
            # A handler that does not stop when told (args.ignore_cancel), as a thread cannot: it
            # ends in its own time, however often it is cancelled.
            if not (args or {}).get("ignore_cancel"):
                raise
            cancelled = True
    append(f"E\t{ctx.execution_id}\t{now()}\n")
    if cancelled:
        raise asyncio.CancelledError()


def append(line):
    # One write(2) per line on an O_APPEND file: lines from several processes never interleave.
    fd = os.open(SIDELOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@worker.handler("py.count")
async def count(ctx, args):
    """Prints `line i` every args.ms (200) for args.n lines, then returns "counted"."""
    for i in range(args.get("n", 5)):
        ctx.log(f"line {i}")
        await asyncio.sleep(args.get("ms", 200) / 1000)
    return "counted"


@worker.handler("py.noop")
async def noop(ctx, args):
    """Nothing, for the benchmark: the output is when the handler began (epoch ms)."""
    return str(int(time.time() * 1000))


@worker.handler("py.block")
def block(ctx, args):
    """A plain function (run on a thread, which a cancel cannot stop): sleeps args.ms whatever
    happens, noting its start and end."""
    note("S", ctx)
    time.sleep(args["ms"] / 1000)
    note("E", ctx)
    return "blocked"


@worker.handler("py.fail")
def fail(ctx, args):
    note("S", ctx)
    raise RuntimeError(f"failed on purpose: {args}")


async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(worker.stop()))
    await worker.run()


asyncio.run(main())
