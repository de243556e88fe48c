#!/usr/bin/python3
"""A stand-in istiod on python3-grpcio (an independent gRPC server stack) for our clients to talk to, over TLS.

Serves istio.v1.auth.IstioCertificateService/CreateCertificate (signs the CSR with openssl and the given CA,
SAN = the requested ImpersonatedIdentity, critical) and envoy's DeltaAggregatedResources (answers each type's
subscription with the workloads of --workloads, then pushes what stdin asks for).

Writes one JSON line per event on stdout: {"event": "listening", "port"}, {"event": "csr", "identity", "ttl",
"authorization"}, {"event": "subscribe", "type_url", "initial"}, {"event": "pushed", "type_url", "nonce",
"names", "removed"}, {"event": "ack"|"nack", "type_url", "nonce", "code", "message"}.
Reads JSON commands on stdin, one per line:
  {"push": [workload, ...], "removed": [uid, ...]}   an Address response
  {"bad": workload}                                   an Address response whose workload has 3 address bytes
  {"quit": true}
A workload is {"uid", "name", "namespace", "address": "a.b.c.d", "node", "serviceAccount"}."""
import argparse
import hashlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

import grpc

import protos

ADDRESS = "type.googleapis.com/istio.workload.Address"

p = argparse.ArgumentParser()
p.add_argument("--protos", required=True)
p.add_argument("--cert", required=True, help="server certificate chain PEM")
p.add_argument("--key", required=True, help="server key PEM")
p.add_argument("--ca-cert", required=True, help="CA that signs workload CSRs")
p.add_argument("--ca-key", required=True)
p.add_argument("--token", required=True, help="the bearer token callers must present")
p.add_argument("--workloads", default="[]", help="JSON list of workloads for the first Address response")
a = p.parse_args()

out = protos.load(a.protos)
from envoy import discovery_pb2 as d  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402
from istio.auth import ca_pb2  # noqa: E402
from istio.workload import workload_pb2 as w  # noqa: E402

print_lock = threading.Lock()
nonces = itertools.count(1)
streams = []
streams_lock = threading.Lock()


def emit(**event):
    with print_lock:
        print(json.dumps(event), flush=True)


def authorized(context):
    md = dict(context.invocation_metadata())
    if md.get("authorization") != "Bearer " + a.token:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad or missing bearer token")
    return md


def create_certificate(request, context):
    md = authorized(context)
    identity = request.metadata.fields["ImpersonatedIdentity"].string_value
    emit(event="csr", identity=identity, ttl=request.validity_duration, authorization=md.get("authorization", ""),
         clusterid=md.get("clusterid", ""))
    work = tempfile.mkdtemp(prefix="ambient-pyca-")
    try:
        csr = os.path.join(work, "req.csr")
        ext = os.path.join(work, "ext.cnf")
        leaf = os.path.join(work, "leaf.pem")
        with open(csr, "w") as f:
            f.write(request.csr)
        with open(ext, "w") as f:
            f.write("[v3]\nsubjectAltName=critical,URI:%s\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n" % identity)
        r = subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", a.ca_cert, "-CAkey", a.ca_key,
                            "-set_serial", str(next(nonces) + 1000), "-days", "1", "-sha256",
                            "-extfile", ext, "-extensions", "v3", "-out", leaf], capture_output=True, text=True)
        if r.returncode != 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "openssl could not sign the CSR: " + r.stderr[-200:])
        chain = [open(leaf).read(), open(a.ca_cert).read()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ca_pb2.IstioCertificateResponse(cert_chain=chain)


def workload_resource(spec, address_bytes=None):
    ip = bytes(int(x) for x in spec["address"].split("."))
    wl = w.Workload(uid=spec["uid"], name=spec["name"], namespace=spec["namespace"],
                    addresses=[address_bytes if address_bytes is not None else ip],
                    tunnel_protocol=w.HBONE, trust_domain="cluster.local",
                    service_account=spec.get("serviceAccount", "default"), node=spec.get("node", ""),
                    cluster_id="Kubernetes")
    body = any_pb2.Any(type_url=ADDRESS, value=w.Address(workload=wl).SerializeToString())
    return d.Resource(name=spec["uid"], version=hashlib.sha256(body.value).hexdigest()[:16], resource=body,
                      aliases=["/" + spec["address"]])


def response(type_url, resources, removed=()):
    return d.DeltaDiscoveryResponse(type_url=type_url, nonce=str(next(nonces)), resources=resources,
                                    removed_resources=list(removed))


def delta_aggregated_resources(request_iterator, context):
    authorized(context)
    outbox = queue.Queue()
    with streams_lock:
        streams.append(outbox)

    def read():
        try:
            for req in request_iterator:
                if not req.response_nonce:
                    emit(event="subscribe", type_url=req.type_url, initial=dict(req.initial_resource_versions))
                    if req.type_url == ADDRESS:
                        outbox.put(response(ADDRESS, [workload_resource(s) for s in json.loads(a.workloads)]))
                    else:
                        outbox.put(response(req.type_url, []))
                elif req.HasField("error_detail"):
                    emit(event="nack", type_url=req.type_url, nonce=req.response_nonce,
                         code=req.error_detail.code, message=req.error_detail.message)
                else:
                    emit(event="ack", type_url=req.type_url, nonce=req.response_nonce)
        finally:
            outbox.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            item = outbox.get()
            if item is None:
                return
            emit(event="pushed", type_url=item.type_url, nonce=item.nonce,
                 names=[r.name for r in item.resources], removed=list(item.removed_resources))
            yield item
    finally:
        with streams_lock:
            streams.remove(outbox)


def broadcast(item):
    with streams_lock:
        for outbox in streams:
            outbox.put(item)


server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers([
    grpc.method_handlers_generic_handler("istio.v1.auth.IstioCertificateService", {
        "CreateCertificate": grpc.unary_unary_rpc_method_handler(
            create_certificate, request_deserializer=ca_pb2.IstioCertificateRequest.FromString,
            response_serializer=ca_pb2.IstioCertificateResponse.SerializeToString)}),
    grpc.method_handlers_generic_handler("envoy.service.discovery.v3.AggregatedDiscoveryService", {
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            delta_aggregated_resources, request_deserializer=d.DeltaDiscoveryRequest.FromString,
            response_serializer=d.DeltaDiscoveryResponse.SerializeToString)}),
])
creds = grpc.ssl_server_credentials([(open(a.key, "rb").read(), open(a.cert, "rb").read())])
port = server.add_secure_port("127.0.0.1:0", creds)
server.start()
emit(event="listening", port=port)

try:
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        if "push" in cmd:
            broadcast(response(ADDRESS, [workload_resource(s) for s in cmd["push"]], cmd.get("removed", [])))
        if "bad" in cmd:
            broadcast(response(ADDRESS, [workload_resource(cmd["bad"], address_bytes=b"\x7f\x00\x01")]))
finally:
    server.stop(grace=1)
    shutil.rmtree(out, ignore_errors=True)
