#!/usr/bin/python3
"""A delta-xDS client on python3-grpcio, acting as a ztunnel would. Writes one JSON line per response:
{"type_url", "nonce", "resources": [{"name", "version", "kind", ...}], "removed": [...]}
and ACKs each (or NACKs the N-th with --nack-index). Reads commands on stdin: "quit" ends the stream.
Exit after --max-responses responses or --seconds seconds."""
import argparse
import json
import queue
import shutil
import sys
import threading

import grpc

import protos

p = argparse.ArgumentParser()
p.add_argument("--protos", required=True)
p.add_argument("--target", required=True)
p.add_argument("--root", required=True)
p.add_argument("--token", default=None)
p.add_argument("--type", default="type.googleapis.com/istio.workload.Address")
p.add_argument("--subscribe", action="append", default=None, help="resource names; default *")
p.add_argument("--initial", default=None, help="JSON object name->version for initial_resource_versions")
p.add_argument("--max-responses", type=int, default=100)
p.add_argument("--seconds", type=float, default=30)
p.add_argument("--nack-index", type=int, default=-1)
a = p.parse_args()

out = protos.load(a.protos)
from google.protobuf import struct_pb2  # noqa: E402
from envoy import discovery_pb2 as d  # noqa: E402
from istio.workload import workload_pb2  # noqa: E402
from google.rpc import status_pb2  # noqa: E402

creds = grpc.ssl_channel_credentials(root_certificates=open(a.root, "rb").read())
ch = grpc.secure_channel(a.target, creds, options=[("grpc.ssl_target_name_override", "istiod.istio-system.svc")])
call = ch.stream_stream(
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
    request_serializer=d.DeltaDiscoveryRequest.SerializeToString,
    response_deserializer=d.DeltaDiscoveryResponse.FromString,
)

outbox = queue.Queue()
meta_struct = struct_pb2.Struct()
meta_struct.update({"NAME": "ztunnel-py", "NAMESPACE": "istio-system", "NODE_NAME": "node-1", "CLUSTER_ID": "Kubernetes"})
first = d.DeltaDiscoveryRequest(
    node=d.Node(id="ztunnel~127.0.1.1~ztunnel-py.istio-system~istio-system.svc.cluster.local", metadata=meta_struct),
    type_url=a.type,
    resource_names_subscribe=a.subscribe or ["*"],
)
if a.initial:
    for k, v in json.loads(a.initial).items():
        first.initial_resource_versions[k] = v
outbox.put(first)


def requests():
    while True:
        item = outbox.get()
        if item is None:
            return
        yield item


def describe(res):
    entry = {"name": res.name, "version": res.version, "aliases": list(res.aliases), "type": res.resource.type_url}
    if res.resource.type_url.endswith("istio.workload.Address"):
        addr = workload_pb2.Address.FromString(res.resource.value)
        kind = addr.WhichOneof("type")
        entry["kind"] = kind
        if kind == "workload":
            w = addr.workload
            entry.update({"uid": w.uid, "namespace": w.namespace, "podName": w.name, "node": w.node,
                          "serviceAccount": w.service_account, "tunnel": workload_pb2.TunnelProtocol.Name(w.tunnel_protocol),
                          "labelsVersion": w.canonical_revision, "services": sorted(w.services.keys()),
                          "addresses": [".".join(str(b) for b in ad) for ad in w.addresses]})
        else:
            s = addr.service
            entry.update({"hostname": s.hostname, "namespace": s.namespace, "ports": [[pp.service_port, pp.target_port] for pp in s.ports]})
    return entry


def stdin_watch():
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    outbox.put(None)


threading.Thread(target=stdin_watch, daemon=True).start()
timer = threading.Timer(a.seconds, lambda: outbox.put(None))
timer.daemon = True
timer.start()

code = "OK"
details = ""
count = 0
try:
    meta = [("authorization", "Bearer " + a.token)] if a.token is not None else []
    for resp in call(requests(), metadata=meta):
        line = {"type_url": resp.type_url, "nonce": resp.nonce, "resources": [describe(r) for r in resp.resources],
                "removed": list(resp.removed_resources)}
        print(json.dumps(line), flush=True)
        ack = d.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce)
        if count == a.nack_index:
            ack.error_detail.CopyFrom(status_pb2.Status(code=3, message="test NACK"))
        outbox.put(ack)
        count += 1
        if count >= a.max_responses:
            outbox.put(None)
            break
except grpc.RpcError as e:
    code, details = e.code().name, e.details()
finally:
    ch.close()
    shutil.rmtree(out, ignore_errors=True)
print(json.dumps({"end": True, "code": code, "details": details}), flush=True)
