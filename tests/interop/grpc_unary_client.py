#!/usr/bin/env python3
"""Independent gRPC peer for interop tests: one raw unary call with the grpcio (C-core) client.

Usage: grpc_unary_client.py TARGET PATH REQUEST_HEX [--metadata KEY=VALUE ...] [--timeout SECONDS]

TARGET is host:port of a plaintext HTTP/2 (h2c) gRPC server. The request and response are raw bytes (no
serializers), so any protobuf message works. Prints one JSON object:
  {"code": "OK", "details": "...", "response_hex": "..."}   (response_hex is null on error)
Exit code 0 whenever the call completed with any gRPC status; 2 on usage errors.
"""
import argparse
import json
import sys

import grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port")
    parser.add_argument("path", help="/package.Service/Method")
    parser.add_argument("request_hex", help="serialized request message, hex-encoded ('' for empty)")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    args = parser.parse_args()

    try:
        request = bytes.fromhex(args.request_hex)
    except ValueError as ex:
        print(f"request_hex is not valid hex: {ex}", file=sys.stderr)
        return 2

    metadata = []
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"metadata '{item}' must be KEY=VALUE", file=sys.stderr)
            return 2
        metadata.append((key.lower(), value))

    # No proxy: tests talk to loopback only, whatever the environment says.
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(args.target, options=options) as channel:
        call = channel.unary_unary(args.path, request_serializer=None, response_deserializer=None)
        try:
            response, rpc = call.with_call(request, metadata=metadata, timeout=args.timeout)
            result = {"code": rpc.code().name, "details": rpc.details() or "", "response_hex": response.hex()}
        except grpc.RpcError as error:
            result = {"code": error.code().name, "details": error.details() or "", "response_hex": None}

    print(json.dumps(result, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
