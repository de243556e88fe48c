"""Raw HTTP/2 frame input for the interop clients that must do what python3-h2's state machine refuses (send
malformed frames, keep using a tunnel after GOAWAY): whole frames parsed with hyperframe from a non-blocking TLS
socket, each handed to the subclass's _handle(frame)."""
import select
import socket
import ssl
import time

import h2.errors
import h2.settings
import hyperframe.frame as hf


# RFC 9113 3.4 client preface; the 16 MiB window both raw clients advertise (ztunnel's connection window).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WINDOW = 16 * 1024 * 1024


def add_hbone_arguments(parser, authority_help):
    """The arguments every raw HBONE client takes: where to connect, its mTLS material, the CONNECT target."""
    parser.add_argument("--addr", required=True, help="host:port of the HBONE listener")
    parser.add_argument("--ca", required=True, help="PEM file of the mesh root")
    parser.add_argument("--cert", required=True, help="client certificate PEM")
    parser.add_argument("--key", required=True, help="client private key PEM")
    parser.add_argument("--authority", required=True, help=authority_help)


def error_name(code):
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return "0x%x" % code


def setting_name(code):
    try:
        return h2.settings.SettingCodes(code).name
    except ValueError:
        return "0x%x" % code


def connect_hbone(addr, ca, cert, key, timeout):
    """TCP to host:port, then mutual TLS 1.3 with ALPN h2 and no SNI, as HBONE does. Returns the TLS socket (blocking,
    ALPN not yet checked: a client may want to report what was negotiated)."""
    host, port = addr.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # SPIFFE certs carry no DNS name; HBONE sends no SNI
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=None)


class FrameSocket:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.closed_at = None
        self.close_reason = None

    @property
    def closed(self):
        return self.closed_at is not None

    def pump(self, wait):
        """Reads what is available (waiting up to `wait` seconds for the first bytes) and handles every whole frame."""
        if self.closed:
            return
        ready, _, _ = select.select([self.sock], [], [], wait)
        if not ready and self.sock.pending() == 0:
            return
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
                self._close("reset: %s" % e)
                break
            if not chunk:
                self._close("eof")
                break
            self.buf += chunk
            if self.sock.pending() == 0:
                break
        self._frames()

    def _close(self, reason):
        if self.closed_at is None:
            self.closed_at = time.monotonic()
            self.close_reason = reason

    def _frames(self):
        while len(self.buf) >= 9:
            frame, length = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            body = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            if isinstance(frame, hf.ExtensionFrame):
                continue
            frame.parse_body(memoryview(body))
            self._handle(frame)

    def _handle(self, frame):
        raise NotImplementedError
