#!/usr/bin/python3
"""HBONE client on python3-h2: mutual TLS 1.3, ALPN h2, no SNI, plain HTTP/2 CONNECT (no :path/:scheme).

Opens one TLS connection, sends --streams CONNECT requests on it and, for each stream answered 200, waits --idle
seconds, sends --send-len bytes (byte i = i % 251), half-closes (END_STREAM) and reads until the server's END_STREAM.
Prints one JSON object on stdout:
  {"status": int|null, "echoed_len": int, "echoed_sha256": hex, "body": str, "peer_serial": hex|null,
   "error": str|null, "streams": [{"status", "echoed_len", "echoed_sha256", "body", "reset"}...]}
Top-level status/echoed_* are the first stream's. A TLS or connection failure gives status null and "error".
"""
import argparse
import hashlib
import json
import select
import socket
import ssl
import sys
import time

try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.settings
except ImportError:
    print(json.dumps({"status": None, "error": "python3-h2 is not installed for /usr/bin/python3 (apt-get install python3-h2)"}))
    sys.exit(3)

WINDOW = 16 * 1024 * 1024

p = argparse.ArgumentParser()
p.add_argument("--addr", required=True, help="host:port of the HBONE listener")
p.add_argument("--ca", required=True, help="PEM file of the CA that signs the server cert")
p.add_argument("--cert", default=None, help="client certificate PEM (omit to send none)")
p.add_argument("--key", default=None, help="client private key PEM")
p.add_argument("--authority", required=True)
p.add_argument("--method", default="CONNECT")
p.add_argument("--header", action="append", default=[], help="extra request header name=value")
p.add_argument("--send-len", type=int, default=0)
p.add_argument("--idle", type=float, default=0.0, help="seconds to keep the tunnel idle before sending")
p.add_argument("--streams", type=int, default=1)
p.add_argument("--timeout", type=float, default=20.0)
p.add_argument("--reset-after", type=float, default=None,
               help="seconds after our END_STREAM to reset each stream (RST_STREAM CANCEL) and stop waiting for it")
p.add_argument("--debug", action="store_true", help="log HTTP/2 events to stderr")
a = p.parse_args()


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.ok_at = None
        self.offset = 0
        self.sent_end = False
        self.ended = False
        self.reset = False
        self.sha = hashlib.sha256()
        self.length = 0
        self.body = b""

    def result(self):
        return {"status": self.status, "echoed_len": self.length if self.status == 200 else 0,
                "echoed_sha256": self.sha.hexdigest() if self.status == 200 else None,
                "body": self.body.decode("utf-8", "replace"), "reset": self.reset}


def emit(streams, serial, error):
    first = streams[0].result() if streams else {"status": None, "echoed_len": 0, "echoed_sha256": None, "body": ""}
    out = dict(first)
    out["peer_serial"] = serial
    out["error"] = error
    out["streams"] = [s.result() for s in streams]
    print(json.dumps(out))


host, port = a.addr.rsplit(":", 1)
host = host.strip("[]")
payload = bytes(i % 251 for i in range(a.send_len))

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.check_hostname = False  # SPIFFE certs have no DNS name; HBONE never uses SNI
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(a.ca)
if a.cert:
    ctx.load_cert_chain(a.cert, a.key)
ctx.set_alpn_protocols(["h2"])

streams = []
serial = None
deadline = time.monotonic() + a.timeout
try:
    raw = socket.create_connection((host, int(port)), timeout=a.timeout)
    sock = ctx.wrap_socket(raw, server_hostname=None)
    serial = sock.getpeercert().get("serialNumber")
    if sock.selected_alpn_protocol() != "h2":
        raise RuntimeError("ALPN h2 not negotiated: %r" % sock.selected_alpn_protocol())
    sock.setblocking(False)

    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config=cfg)
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
        h2.settings.SettingCodes.ENABLE_PUSH: 0,
    })
    conn.initiate_connection()
    conn.increment_flow_control_window(WINDOW)

    for _ in range(a.streams):
        sid = conn.get_next_available_stream_id()
        if a.method == "CONNECT":
            headers = [(":method", "CONNECT"), (":authority", a.authority)]
        else:
            headers = [(":method", a.method), (":scheme", "https"), (":path", "/"), (":authority", a.authority)]
        for h in a.header:
            name, _, value = h.partition("=")
            headers.append((name.lower(), value))
        conn.send_headers(sid, headers, end_stream=False)
        streams.append(Stream(sid))
    by_id = {s.sid: s for s in streams}

    def flush():
        data = conn.data_to_send()
        while data:
            try:
                n = sock.send(data)
                data = data[n:]
            except (ssl.SSLWantWriteError, BlockingIOError):
                select.select([], [sock], [], 1.0)

    def send_payloads():
        now = time.monotonic()
        for s in streams:
            if s.status != 200 or s.sent_end or s.reset or now < s.ok_at + a.idle:
                continue
            while s.offset < len(payload):
                window = min(conn.local_flow_control_window(s.sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk = payload[s.offset:s.offset + window]
                conn.send_data(s.sid, chunk)
                s.offset += len(chunk)
            if s.offset >= len(payload):
                conn.end_stream(s.sid)
                s.sent_end = True
                s.end_at = now
        if a.reset_after is not None:
            for s in streams:
                if s.sent_end and not s.reset and not s.ended and now >= s.end_at + a.reset_after:
                    conn.reset_stream(s.sid, h2.errors.ErrorCodes.CANCEL)
                    s.reset = True

    flush()
    error = None
    def done(s):
        # A 200 stream is finished when both directions are: the server may half-close first (its END_STREAM)
        # while we still have bytes to send.
        return s.reset or (s.ended and (s.sent_end or s.status != 200))

    while not all(done(s) for s in streams):
        if time.monotonic() > deadline:
            error = "timeout"
            break
        send_payloads()
        flush()
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready and sock.pending() == 0:
            continue
        try:
            data = sock.recv(1 << 20)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        if not data:
            error = "connection closed by server"
            break
        for ev in conn.receive_data(data):
            if a.debug:
                print("%.3f %r" % (time.monotonic(), ev), file=sys.stderr)
            if isinstance(ev, h2.events.ResponseReceived):
                s = by_id[ev.stream_id]
                s.status = int(dict(ev.headers)[":status"])
                s.ok_at = time.monotonic()
            elif isinstance(ev, h2.events.DataReceived):
                s = by_id[ev.stream_id]
                if s.status == 200:
                    s.sha.update(ev.data)
                    s.length += len(ev.data)
                elif len(s.body) < 4096:
                    s.body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                by_id[ev.stream_id].ended = True
            elif isinstance(ev, h2.events.StreamReset):
                by_id[ev.stream_id].reset = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                error = "GOAWAY error_code=%s" % ev.error_code
        flush()
        if error:
            break
    emit(streams, serial, error)
    try:
        conn.close_connection()
        flush()
        sock.close()
    except Exception:
        pass
except (ssl.SSLError, OSError, RuntimeError) as e:
    emit(streams, serial, "%s: %s" % (type(e).__name__, e))
