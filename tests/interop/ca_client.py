#!/usr/bin/python3
"""CreateCertificate with python3-grpcio against istiod-lite. Prints one JSON object:
{"code": "OK"|status name, "details": str, "chain": [pem...]}."""
import argparse
import json
import shutil
import sys

import grpc

import protos

p = argparse.ArgumentParser()
p.add_argument("--protos", required=True)
p.add_argument("--target", required=True, help="host:port")
p.add_argument("--root", required=True, help="mesh root cert PEM file")
p.add_argument("--token", default=None)
p.add_argument("--identity", default=None, help="ImpersonatedIdentity")
p.add_argument("--csr", required=True, help="CSR PEM file (or any text to send as the CSR)")
p.add_argument("--ttl", type=int, default=0)
a = p.parse_args()

out = protos.load(a.protos)
from google.protobuf import struct_pb2  # noqa: E402
from istio.auth import ca_pb2  # noqa: E402

creds = grpc.ssl_channel_credentials(root_certificates=open(a.root, "rb").read())
opts = [("grpc.ssl_target_name_override", "istiod.istio-system.svc")]
ch = grpc.secure_channel(a.target, creds, options=opts)
call = ch.unary_unary(
    "/istio.v1.auth.IstioCertificateService/CreateCertificate",
    request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
    response_deserializer=ca_pb2.IstioCertificateResponse.FromString,
)
md = struct_pb2.Struct()
if a.identity:
    md.update({"ImpersonatedIdentity": a.identity})
req = ca_pb2.IstioCertificateRequest(csr=open(a.csr).read(), validity_duration=a.ttl, metadata=md)
meta = [("clusterid", "Kubernetes")]
if a.token is not None:
    meta.append(("authorization", "Bearer " + a.token))
try:
    resp = call(req, metadata=meta, timeout=20)
    result = {"code": "OK", "details": "", "chain": list(resp.cert_chain)}
except grpc.RpcError as e:
    result = {"code": e.code().name, "details": e.details(), "chain": []}
finally:
    ch.close()
    shutil.rmtree(out, ignore_errors=True)
json.dump(result, sys.stdout)
print()
