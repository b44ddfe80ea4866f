# A Connect (HTTP/1.1, JSON) server-streaming request from a client that stops reading, for
# test/e2e/watch-limits.test.ts. Node cannot size a TCP socket's buffers, and on loopback Linux
# grows a paused reader's receive buffer to megabytes: a stream of a few MB may then fit in the
# kernel whole and never push back on the server. Here the receive buffer is pinned small before
# connecting (SO_RCVBUF turns autotuning off), so all the server can get out is what its own
# send buffer takes (net.ipv4.tcp_wmem's maximum, 4 MB by default) plus 16 KB.
#
#   python3 stalled-connect.py PORT PATH JSON
#
# Sends the request, reads the first bytes of the answer, prints "responded", then reads nothing
# until a line arrives on standard input. It then reads the answer to its end and prints one JSON
# line: {"bytes": <bytes received>, "end": <the end-of-stream message, or null>}. Standard input
# closed without a line: it exits without reading.

import json
import socket
import sys

port, path, request = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
envelope = b"\0" + len(request).to_bytes(4, "big") + request
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
sock.connect(("127.0.0.1", port))
sock.sendall(
    (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        "Content-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\n"
        f"Content-Length: {len(envelope)}\r\n\r\n"
    ).encode()
    + envelope
)
chunks = [sock.recv(4096)]
print("responded", flush=True)
if not sys.stdin.readline():
    sys.exit(0)
while True:
    chunk = sock.recv(1 << 16)
    if not chunk:
        break
    chunks.append(chunk)
raw = b"".join(chunks)

# The chunked body after the head, then its envelopes (flags byte, 4-byte length, data).
body = bytearray()
at = raw.find(b"\r\n\r\n") + 4
while at < len(raw):
    eol = raw.find(b"\r\n", at)
    size = int(raw[at:eol], 16) if eol >= 0 else 0
    if size <= 0:
        break
    body += raw[eol + 2 : eol + 2 + size]
    at = eol + 2 + size + 2
end = None
at = 0
while at + 5 <= len(body):
    flags, length = body[at], int.from_bytes(body[at + 1 : at + 5], "big")
    if flags & 2:
        end = json.loads(bytes(body[at + 5 : at + 5 + length]))
    at += 5 + length
print(json.dumps({"bytes": len(raw), "end": end}), flush=True)
