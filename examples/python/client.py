#!/usr/bin/env python3
"""A rota client in Python, generated from proto/ at run time with grpcio-tools.

Puts a job, triggers it, watches its execution to the end, lists executions, and prints a JSON
summary. Usage: python3 examples/python/client.py HOST:PORT
Needs: pip install grpcio grpcio-tools
"""
import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(ROOT, "proto")
WELL_KNOWN = os.path.join(os.path.dirname(protoc.__file__), "_proto")


def generate(out):
    files = [f"rota/v1/{n}.proto" for n in ("common", "node", "scheduler")]
    args = ["protoc", f"-I{PROTO}", f"-I{WELL_KNOWN}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    return importlib.import_module("rota.v1.scheduler_pb2"), importlib.import_module("rota.v1.scheduler_pb2_grpc")


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7700"
    with tempfile.TemporaryDirectory() as out:
        pb, rpc = generate(out)
        common = importlib.import_module("rota.v1.common_pb2")
        stub = rpc.SchedulerServiceStub(grpc.insecure_channel(target))
        job = common.Job(id="py-example", cron="0 0 3 29 2 *", handler="sleep")
        job.args.list_value.values.add().string_value = "200ms"
        stub.PutJob(pb.PutJobRequest(job=job), timeout=5)
        # Watch first, so the whole life of the fire is seen.
        stream = stub.WatchExecutions(pb.WatchExecutionsRequest(job_id="py-example"), timeout=20)
        fired = stub.TriggerJob(pb.TriggerJobRequest(id="py-example", idempotency_key="py-1"), timeout=5)
        states = []
        for change in stream:
            if change.execution.id != fired.execution.id:
                continue
            name = common.ExecutionState.Name(change.execution.state)
            states.append(name)
            if name not in ("EXECUTION_STATE_PENDING", "EXECUTION_STATE_RUNNING"):
                stream.cancel()
                break
        listed = stub.ListExecutions(pb.ListExecutionsRequest(job_id="py-example", page_size=10), timeout=5)
        print(json.dumps({
            "client": "python",
            "execution": fired.execution.id,
            "states": states,
            "listed": [e.id for e in listed.executions],
        }))


if __name__ == "__main__":
    main()
