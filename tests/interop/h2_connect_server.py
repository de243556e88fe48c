#!/usr/bin/python3
"""HBONE-style HTTP/2 CONNECT echo server on python3-h2 (an independent HTTP/2 implementation for interop tests).

Mutual TLS 1.3 (ALPN h2, client cert required, verified against --ca). Accepts plain CONNECT (no :scheme/:path),
answers 200 and echoes DATA back; END_STREAM from the client is answered with END_STREAM once the echo is flushed.
Misbehaviours on request, for the client's error paths:
  --status AUTH=CODE       answer CONNECT to AUTH with CODE (e.g. 503) and END_STREAM
  --goaway-on-stream N     when the N-th stream arrives, send GOAWAY(last_stream_id = previous stream) and ignore it
  --rst-authority AUTH     after the 200, answer the first DATA on AUTH with RST_STREAM(INTERNAL_ERROR)
  --oversize-authority AUTH  after the 200, send a DATA frame one byte larger than the client's SETTINGS_MAX_FRAME_SIZE
  --ping                   send a PING after the handshake and report the client's ACK
  --blackhole              after the handshake, read and discard everything (never ACK anything)
Reports on stdout, one line each, flushed: "PORT <n>" first, then SNI <name|none>, STREAM <authority>,
PING_RECEIVED, PING_ACK, GOAWAY <error name>, CLOSED.
"""
import argparse
import socket
import ssl
import struct
import sys
import threading

import h2.config
import h2.exceptions
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

LOCK = threading.Lock()


def report(line):
    with LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Session:
    def __init__(self, sock, args, counter):
        self.sock = sock
        self.args = args
        self.counter = counter
        # h2's request validation insists on :path even for CONNECT; HBONE is plain CONNECT (RFC 9113 section 8.5),
        # so validate the pseudo-headers ourselves in handle().
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8", validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.pending = {}
        self.ended = set()
        self.authority = {}
        self.rst_done = set()
        self.ignored = set()
        self.stream_ids = []

    def send(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4 * 1024 * 1024,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 250,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: 1024 * 1024,
        })
        # Settings built with initial_values count as already in force, so h2 never runs its "settings changed" hook
        # that widens the inbound frame limit: set the limit we advertise explicitly.
        self.conn.max_inbound_frame_size = 1024 * 1024
        self.conn.incoming_buffer.max_frame_size = 1024 * 1024
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(16 * 1024 * 1024 - 65535)
        if self.args.ping:
            self.conn.ping(b"hbone-pi")
        self.send()
        while True:
            try:
                data = self.sock.recv(256 * 1024)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                report("CLOSED")
                return
            if self.args.blackhole:
                continue
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                report("PROTOCOL_ERROR " + str(e).replace("\n", " "))
                self.send()
                return
            for event in events:
                self.handle(event)
            self.send()
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                return  # like real servers: close after the client's GOAWAY

    def handle(self, event):
        conn = self.conn
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            headers = dict(event.headers)
            authority = headers.get(":authority", "")
            self.authority[sid] = authority
            self.stream_ids.append(sid)
            self.counter[0] += 1
            report("STREAM " + authority)
            if self.args.goaway_on_stream and len(self.stream_ids) == self.args.goaway_on_stream:
                # Raw GOAWAY: h2 refuses to send anything after its own close_connection(), but RFC 9113 lets
                # streams at or below last_stream_id finish, which is what the client must handle.
                self.ignored.add(sid)
                self.send()
                last = self.stream_ids[-2] if len(self.stream_ids) > 1 else 0
                frame = GoAwayFrame(stream_id=0, last_stream_id=last, error_code=0)
                self.sock.sendall(frame.serialize())
                return
            if headers.get(":method") != "CONNECT" or ":path" in headers or ":scheme" in headers or not authority:
                conn.send_headers(sid, [(":status", "400")], end_stream=True)
                return
            status = self.args.status_map.get(authority)
            if status:
                conn.send_headers(sid, [(":status", str(status))], end_stream=True)
                return
            conn.send_headers(sid, [(":status", "200")])
            if authority == self.args.oversize_authority:
                self.send()
                size = conn.remote_settings.max_frame_size + 1
                header = struct.pack(">I", size)[1:] + bytes([0, 0]) + struct.pack(">I", sid)
                self.sock.sendall(header + b"x" * size)
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            conn.acknowledge_received_data(event.flow_controlled_length, sid)
            if sid in self.ignored:
                return
            if self.authority.get(sid) == self.args.rst_authority and sid not in self.rst_done:
                self.rst_done.add(sid)
                conn.reset_stream(sid, error_code=ErrorCodes.INTERNAL_ERROR)
                return
            self.pending.setdefault(sid, bytearray()).extend(event.data)
            self.flush(sid)
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self.ignored:
                return
            self.ended.add(event.stream_id)
            self.flush(event.stream_id)
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            for sid in list(self.pending.keys()) + list(self.ended):
                self.flush(sid)
        elif isinstance(event, h2.events.StreamReset):
            self.pending.pop(event.stream_id, None)
            self.ended.discard(event.stream_id)
        elif isinstance(event, h2.events.PingReceived):
            report("PING_RECEIVED")
        elif isinstance(event, h2.events.PingAckReceived):
            report("PING_ACK")
        elif isinstance(event, h2.events.ConnectionTerminated):
            try:
                name = ErrorCodes(event.error_code).name
            except ValueError:
                name = str(event.error_code)
            report("GOAWAY " + name)

    def flush(self, sid):
        conn = self.conn
        buf = self.pending.get(sid)
        try:
            while buf:
                n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(buf))
                if n <= 0:
                    break
                conn.send_data(sid, bytes(buf[:n]))
                del buf[:n]
            if not buf and sid in self.ended:
                self.ended.discard(sid)
                self.pending.pop(sid, None)
                conn.end_stream(sid)
        except h2.exceptions.StreamClosedError:
            self.pending.pop(sid, None)
            self.ended.discard(sid)


def serve(args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])

    def on_sni(sslsock, server_name, ctx):
        report("SNI " + (server_name if server_name else "none"))

    context.sni_callback = on_sni

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    report("PORT %d" % listener.getsockname()[1])
    counter = [0]

    def handle(raw):
        try:
            with context.wrap_socket(raw, server_side=True) as tls:
                if tls.selected_alpn_protocol() != "h2":
                    report("NO_H2")
                    return
                Session(tls, args, counter).run()
        except (ssl.SSLError, ConnectionError, OSError) as e:
            report("TLS_ERROR " + str(e).replace("\n", " "))
        except Exception as e:  # report, never die silently: the test shows these lines on failure
            report("ERROR %s: %s" % (type(e).__name__, str(e).replace("\n", " ")))

    while True:
        raw, _ = listener.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(raw,), daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--status", action="append", default=[], metavar="AUTH=CODE")
    parser.add_argument("--goaway-on-stream", type=int, default=0)
    parser.add_argument("--rst-authority", default=None)
    parser.add_argument("--oversize-authority", default=None)
    parser.add_argument("--ping", action="store_true")
    parser.add_argument("--blackhole", action="store_true")
    args = parser.parse_args()
    args.status_map = {}
    for item in args.status:
        authority, _, code = item.rpartition("=")
        if not authority or not code.isdigit():
            parser.error("--status wants AUTH=CODE, got %r" % item)
        args.status_map[authority] = int(code)
    serve(args)


if __name__ == "__main__":
    main()
