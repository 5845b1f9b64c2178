"""Generates rota_worker/_proto (the WorkerService stubs) from the repository's proto/ when the
package is built, so the stubs always match the protocol of the rota checkout they come from."""
import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def proto_root():
    # ROTA_PROTO: the repository's proto/ when building from a copy of this folder.
    candidates = [os.environ.get("ROTA_PROTO", ""), os.path.join(HERE, "proto"), os.path.join(HERE, "..", "..", "proto")]
    for candidate in filter(None, candidates):
        if os.path.exists(os.path.join(candidate, "rota", "v1", "worker.proto")):
            return candidate
    raise SystemExit("rota-worker: cannot find proto/rota/v1/worker.proto (build from the rota repository)")


def generate(out):
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, "_tmp")
    args = ["protoc", f"-I{proto_root()}", f"-I{well_known}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
            "rota/v1/worker.proto"]
    os.makedirs(tmp, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("rota-worker: protoc failed on worker.proto")
    for name in ("worker_pb2.py", "worker_pb2_grpc.py"):
        with open(os.path.join(tmp, "rota", "v1", name)) as f:
            text = f.read()
        # The generated service module imports its messages by their proto package path; inside this
        # package they are a sibling module.
        text = re.sub(r"^from rota\.v1 import worker_pb2", "from . import worker_pb2", text, flags=re.M)
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    with open(os.path.join(out, "__init__.py"), "w") as f:
        f.write('"""Generated from proto/rota/v1/worker.proto at build time. Do not edit."""\n')
    for root, dirs, files in os.walk(tmp, topdown=False):
        for n in files:
            os.remove(os.path.join(root, n))
        for d in dirs:
            os.rmdir(os.path.join(root, d))
    os.rmdir(tmp)


# Before setup() reads the package list (metadata comes before build_py, and names _proto).
generate(os.path.join(HERE, "rota_worker", "_proto"))
setup()
