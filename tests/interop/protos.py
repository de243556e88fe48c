"""Compiles the repo's .proto files with Debian's grpc_tools at test time and puts them on sys.path.

The interop clients use an independent gRPC implementation (Debian's python3-grpcio) and an independent
protobuf code generator, so a field-number or framing mistake on our side shows up here."""
import os
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

FILES = [
    "istio/workload/workload.proto",
    "istio/security/authorization.proto",
    "istio/auth/ca.proto",
    "envoy/discovery.proto",
    "google/rpc/status.proto",
]


def load(proto_root):
    out = tempfile.mkdtemp(prefix="ambient-pyproto-")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["protoc", "-I" + proto_root, "-I" + wkt, "--python_out=" + out] + [os.path.join(proto_root, f) for f in FILES]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + proto_root)
    sys.path.insert(0, out)
    return out
