#!/usr/bin/python3
"""An HBONE client that watches one connection over time: mutual TLS 1.3 + ALPN h2 with a mesh client certificate,
frames built with hyperframe and header blocks with hpack (the layers of python3-h2; the h2 state machine itself
would refuse to go on using a tunnel after GOAWAY, which is exactly what a draining server allows).

Scenarios (--scenario):
  over-limit  --streams CONNECTs in one burst, sent before the server's SETTINGS are read (a client that does not wait
              for SETTINGS_MAX_CONCURRENT_STREAMS), or with --staged as many as SETTINGS allow, answered, then the rest;
              then reads until every stream has an answer (a :status or an RST_STREAM) or --wait seconds pass. Reports
              per outcome how many streams, and when the last answer and the last refusal came after the (last) burst.
  drain       two tunnels to --authority: "transfer" and "idle". After a first echo round trip on "transfer" it prints
              {"ready": true} on its own line and waits for the server's GOAWAY. Then it opens one more stream (a
              server going away must refuse it), sends --send-len more bytes on "transfer" (byte i = i % 251),
              half-closes it and reads the echo up to the server's END_STREAM, while "idle" stays open, so the
              server has to cut the connection itself when its drain timeout passes.

Prints one JSON object on its last stdout line; times are seconds on one monotonic clock:
  over-limit: {"server_settings", "outcomes": {"200": n, "RST_STREAM REFUSED_STREAM": n, "none": n, ...},
               "last_answer_s", "last_refusal_s", "closed", "error"}   (times from the burst's last byte)
  drain:      {"server_settings", "goaway": {"error_name", "last_stream_id", "after_ready_s"} | null,
               "refused_after_goaway": error name | status | null, "transfer": {"sent", "echoed", "intact",
               "ended_after_goaway_s"}, "idle_reset": error name | null, "closed", "close_reason",
               "closed_after_goaway_s", "error"}
Exit 3 if python3-h2 (hyperframe, hpack) is missing; 0 otherwise (see "error").
"""
import argparse
import json
import ssl
import sys
import time

try:
    import hpack
    import hyperframe.frame as hf
    from h2_frames import PREFACE, WINDOW, FrameSocket, add_hbone_arguments, connect_hbone, error_name, setting_name
except ImportError:
    print(json.dumps({"error": "python3-h2 is not installed for /usr/bin/python3 (apt-get install python3-h2)"}))
    sys.exit(3)


p = argparse.ArgumentParser()
add_hbone_arguments(p, "CONNECT target (podIP:port)")
p.add_argument("--scenario", required=True, choices=["over-limit", "drain"])
p.add_argument("--streams", type=int, default=300, help="over-limit: CONNECTs in the burst")
p.add_argument("--wait", type=float, default=10.0, help="over-limit: seconds to wait for every answer")
p.add_argument("--staged", action="store_true",
               help="over-limit: read SETTINGS, open MAX_CONCURRENT_STREAMS and wait for their answers, then the rest")
p.add_argument("--send-len", type=int, default=256 * 1024, help="drain: bytes sent on the transfer tunnel after GOAWAY")
p.add_argument("--timeout", type=float, default=30.0, help="drain: seconds each phase may take")
a = p.parse_args()


class Connection(FrameSocket):
    """Frame I/O on a non-blocking TLS socket, with the per-stream state the scenarios look at."""

    def __init__(self, sock):
        super().__init__(sock)
        self.out = bytearray()
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.block = None
        self.settings = {}
        self.settings_seen = False
        self.send_window = 65535  # connection send window (RFC 9113 6.9.2)
        self.stream_windows = {}
        self.initial_window = 65535
        self.goaway = None
        self.status = {}  # stream id -> (:status, time)
        self.rst = {}  # stream id -> (error name, time)
        self.data = {}  # stream id -> bytearray
        self.ended = {}  # stream id -> time of the server's END_STREAM

    def queue(self, frame):
        self.out += frame.serialize()

    def connect(self, sid, authority):
        block = self.encoder.encode([(":method", "CONNECT"), (":authority", authority)])
        self.stream_windows[sid] = self.initial_window
        self.queue(hf.HeadersFrame(sid, data=block, flags=["END_HEADERS"]))

    def send_data(self, sid, payload, end):
        """Queues as much of payload as the windows allow; returns how many bytes went."""
        n = max(0, min(len(payload), self.send_window, self.stream_windows.get(sid, 0),
                       self.settings.get(hf.SettingsFrame.MAX_FRAME_SIZE, 16384)))
        if n or (end and not payload):
            flags = ["END_STREAM"] if end and n == len(payload) else []
            self.queue(hf.DataFrame(sid, data=bytes(payload[:n]), flags=flags))
            self.send_window -= n
            self.stream_windows[sid] -= n
        return n

    def flush(self):
        while self.out and not self.closed:
            try:
                n = self.sock.send(self.out)
                del self.out[:n]
            except (ssl.SSLWantWriteError, BlockingIOError):
                self.pump(0.05)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
                self._close("reset: %s" % e)

    def _handle(self, f):
        now = time.monotonic()
        if isinstance(f, hf.SettingsFrame):
            if "ACK" not in f.flags:
                if hf.SettingsFrame.INITIAL_WINDOW_SIZE in f.settings:
                    new = f.settings[hf.SettingsFrame.INITIAL_WINDOW_SIZE]
                    for sid in self.stream_windows:
                        self.stream_windows[sid] += new - self.initial_window
                    self.initial_window = new
                self.settings.update(f.settings)
                self.settings_seen = True
                self.queue(hf.SettingsFrame(0, flags=["ACK"]))
        elif isinstance(f, hf.PingFrame):
            if "ACK" not in f.flags:
                self.queue(hf.PingFrame(0, flags=["ACK"], opaque_data=f.opaque_data))
        elif isinstance(f, hf.WindowUpdateFrame):
            if f.stream_id == 0:
                self.send_window += f.window_increment
            elif f.stream_id in self.stream_windows:
                self.stream_windows[f.stream_id] += f.window_increment
        elif isinstance(f, hf.GoAwayFrame):
            self.goaway = {"error_name": error_name(f.error_code), "last_stream_id": f.last_stream_id, "at": now}
        elif isinstance(f, hf.RstStreamFrame):
            self.rst.setdefault(f.stream_id, (error_name(f.error_code), now))
        elif isinstance(f, (hf.HeadersFrame, hf.ContinuationFrame)):
            if isinstance(f, hf.HeadersFrame):
                self.block = (f.stream_id, bytearray(f.data))
            elif self.block is not None:
                self.block[1].extend(f.data)
            if "END_HEADERS" in f.flags and self.block is not None:
                sid, block = self.block
                self.block = None
                for name, value in self.decoder.decode(bytes(block)):
                    if name in (":status", b":status"):
                        self.status.setdefault(sid, (int(value), now))
            if "END_STREAM" in f.flags:
                self.ended.setdefault(f.stream_id, now)
        elif isinstance(f, hf.DataFrame):
            self.data.setdefault(f.stream_id, bytearray()).extend(f.data)
            if f.flow_controlled_length:
                self.queue(hf.WindowUpdateFrame(0, window_increment=f.flow_controlled_length))
                if "END_STREAM" not in f.flags:
                    self.queue(hf.WindowUpdateFrame(f.stream_id, window_increment=f.flow_controlled_length))
            if "END_STREAM" in f.flags:
                self.ended.setdefault(f.stream_id, now)

    def wait(self, condition, seconds):
        deadline = time.monotonic() + seconds
        while not condition() and not self.closed and time.monotonic() < deadline:
            self.flush()
            self.pump(0.05)
        self.flush()
        return condition()


def pattern(start, length):
    return bytes((start + i) % 251 for i in range(length))


def over_limit(conn, result):
    sids = [1 + 2 * i for i in range(a.streams)]
    first = sids
    if a.staged:
        # As many as the server allows, answered, then the rest on top.
        if not conn.wait(lambda: conn.settings_seen, a.wait):
            raise RuntimeError("no SETTINGS from the server")
        first = sids[:conn.settings.get(hf.SettingsFrame.MAX_CONCURRENT_STREAMS, len(sids))]
        for s in first:
            conn.connect(s, a.authority)
        if not conn.wait(lambda: all(s in conn.status or s in conn.rst for s in first), a.wait):
            raise RuntimeError("the streams within the limit were not all answered")
    # Otherwise the whole burst goes out before a single server frame is read.
    for s in sids[len(first) if a.staged else 0:]:
        conn.connect(s, a.authority)
    conn.flush()
    sent_at = time.monotonic()
    conn.wait(lambda: all(s in conn.status or s in conn.rst for s in sids), a.wait)
    outcomes, last_answer, last_refusal = {}, None, None
    for s in sids:
        if s in conn.status:
            key, at = str(conn.status[s][0]), conn.status[s][1]
        elif s in conn.rst:
            key, at = "RST_STREAM " + conn.rst[s][0], conn.rst[s][1]
        else:
            key, at = "none", None
        outcomes[key] = outcomes.get(key, 0) + 1
        if at is not None:
            last_answer = max(last_answer or 0, at - sent_at)
            if key == "RST_STREAM REFUSED_STREAM":
                last_refusal = max(last_refusal or 0, at - sent_at)
    result.update({"outcomes": outcomes, "last_answer_s": last_answer, "last_refusal_s": last_refusal})


def drain(conn, result):
    transfer, idle, late = 1, 3, 5
    conn.connect(transfer, a.authority)
    conn.connect(idle, a.authority)
    if not conn.wait(lambda: transfer in conn.status and idle in conn.status, a.timeout):
        raise RuntimeError("the tunnels were not answered: %r %r" % (conn.status, conn.rst))
    if conn.status[transfer][0] != 200 or conn.status[idle][0] != 200:
        raise RuntimeError("a tunnel was refused: %r" % conn.status)
    first = pattern(0, 1024)
    conn.send_data(transfer, first, end=False)
    if not conn.wait(lambda: len(conn.data.get(transfer, b"")) >= len(first), a.timeout):
        raise RuntimeError("no echo on the transfer tunnel")

    print(json.dumps({"ready": True}), flush=True)
    ready_at = time.monotonic()
    if not conn.wait(lambda: conn.goaway is not None, a.timeout):
        if conn.closed:
            raise RuntimeError("the connection was closed (%s) %.2f s after ready, without a GOAWAY"
                               % (conn.close_reason, conn.closed_at - ready_at))
        raise RuntimeError("no GOAWAY within %.0f s" % a.timeout)
    goaway_at = conn.goaway["at"]
    result["goaway"] = {"error_name": conn.goaway["error_name"], "last_stream_id": conn.goaway["last_stream_id"],
                        "after_ready_s": round(goaway_at - ready_at, 3)}

    # A server going away refuses new streams (RFC 9113 6.8), while the tunnels it already took carry on.
    conn.connect(late, a.authority)
    rest = pattern(len(first), a.send_len)
    sent = 0
    while sent < len(rest) and not conn.closed and time.monotonic() < goaway_at + a.timeout:
        n = conn.send_data(transfer, rest[sent:], end=False)
        sent += n
        conn.flush()
        conn.pump(0 if n else 0.01)  # an empty window waits for the server's WINDOW_UPDATE
    conn.send_data(transfer, b"", end=True)
    conn.wait(lambda: transfer in conn.ended or transfer in conn.rst, a.timeout)
    echoed = bytes(conn.data.get(transfer, b""))
    result["transfer"] = {
        "sent": len(first) + sent,
        "echoed": len(echoed),
        "intact": echoed == first + rest,
        "ended_after_goaway_s": round(conn.ended[transfer] - goaway_at, 3) if transfer in conn.ended else None,
        "reset": conn.rst.get(transfer, (None,))[0],
    }
    conn.wait(lambda: False, a.timeout)  # until the server cuts the connection (the idle tunnel is still open)
    late_answer = conn.rst.get(late, (None,))[0] or (conn.status[late][0] if late in conn.status else None)
    result["refused_after_goaway"] = late_answer
    result["idle_reset"] = conn.rst.get(idle, (None,))[0]
    result["closed_after_goaway_s"] = round(conn.closed_at - goaway_at, 3) if conn.closed else None


result = {"scenario": a.scenario, "server_settings": {}, "closed": False, "close_reason": None, "error": None}
conn = None
try:
    sock = connect_hbone(a.addr, a.ca, a.cert, a.key, a.timeout)
    if sock.selected_alpn_protocol() != "h2":
        raise RuntimeError("ALPN h2 not negotiated: %r" % sock.selected_alpn_protocol())
    sock.setblocking(False)
    conn = Connection(sock)
    conn.out += PREFACE
    conn.queue(hf.SettingsFrame(0, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: WINDOW, hf.SettingsFrame.ENABLE_PUSH: 0}))
    conn.queue(hf.WindowUpdateFrame(0, window_increment=WINDOW - 65535))
    if a.scenario == "over-limit":
        over_limit(conn, result)
    else:
        if not conn.wait(lambda: conn.settings_seen, a.timeout):
            raise RuntimeError("no SETTINGS from the server")
        drain(conn, result)
except (OSError, ssl.SSLError, RuntimeError, hpack.HPACKError) as e:
    result["error"] = "%s: %s" % (type(e).__name__, e)
if conn is not None:
    result["server_settings"] = {setting_name(k): v for k, v in conn.settings.items()}
    result["closed"] = conn.closed
    result["close_reason"] = conn.close_reason
print(json.dumps(result), flush=True)
