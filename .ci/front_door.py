#!/usr/bin/env python3
"""The README's front door, as a newcomer meets it: run the README's run command exactly as
written (on a fresh clone, without OPENAI_API_KEY, so in demo mode), wait for /health, have a
WebSocket client get session.created and a whole streamed response, then stop the relay with
SIGINT as Ctrl-C would and check that it drained and exited 0.

The command is read from README.md: the first line of the code block that follows the marker
`<!-- ci: run command -->`. Only PORT and HOST are set around it (a free loopback port), which
the command itself does not name. Python's standard library only; every wait is bounded.

usage: python3 .ci/front_door.py [--print-test-command]
"""

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The first `cargo run --release` of a fresh clone compiles the relay: minutes on two cores.
START_TIMEOUT = 1500
STEP_TIMEOUT = 20


def readme_command(marker):
    """The first line of the code block after `<!-- ci: MARKER -->` in README.md."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    tag = "<!-- ci: %s -->" % marker
    at = lines.index(tag)
    fence = next(i for i in range(at + 1, len(lines)) if lines[i].startswith("```"))
    command = lines[fence + 1].strip()
    if not command or command.startswith("```"):
        sys.exit("front_door: the block after %s is empty" % tag)
    return command


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=2) as r:
            return r.status
    except OSError:
        return None


class Ws:
    """The smallest WebSocket client that can talk to the relay: text frames, masked sends."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: realtime\r\n\r\n"
                % (path, port, key)
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                sys.exit("front_door: the relay closed the connection during the upgrade")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            sys.exit("front_door: upgrade refused: %r" % head)
        if b"sec-websocket-protocol: realtime" not in head.lower():
            sys.exit("front_door: the relay did not select the realtime subprotocol: %r" % head)

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                sys.exit("front_door: the relay closed the connection mid-frame")
            data += chunk
        return data

    def recv(self):
        """(opcode, payload) of the next whole message; pings are answered."""
        message, first_op = b"", None
        while True:
            b0, b1 = self._exact(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            if op == 0x9:
                self.send(payload, 0xA)
                continue
            if op >= 0x8:
                return op, payload
            first_op = op if first_op is None else first_op
            message += payload
            if b0 & 0x80:
                return first_op, message

    def send(self, payload, op=0x1):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | op, 0x80 | n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | op, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | op, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def event(self):
        op, payload = self.recv()
        if op != 0x1:
            sys.exit("front_door: expected a text event, got opcode %d %r" % (op, payload))
        return json.loads(payload)


def conversation(port):
    ws = Ws(port, "/realtime?model=gpt-realtime-mini")
    first = ws.event()
    if first.get("type") != "session.created":
        sys.exit("front_door: first event is not session.created: %s" % first)
    ws.send(json.dumps({"type": "response.create", "event_id": "front-door"}).encode())
    kinds = []
    while True:
        event = ws.event()
        kinds.append(event.get("type"))
        if event.get("type") == "error":
            sys.exit("front_door: error event: %s" % event)
        if event.get("type") == "response.done":
            usage = event.get("response", {}).get("usage", {})
            if not isinstance(usage.get("total_tokens"), int):
                sys.exit("front_door: response.done without usage: %s" % event)
            break
        if len(kinds) > 1000:
            sys.exit("front_door: no response.done after 1000 events")
    ws.send(struct.pack(">H", 1000), 0x8)
    op, _ = ws.recv()
    if op != 0x8:
        sys.exit("front_door: no close frame answered ours")
    print("front_door: session.created, then %d events ending in response.done" % len(kinds))


def webrtc_in_demo(port):
    """The demo upstream of the release build has no WebRTC: a call is refused in JSON, 502."""
    import urllib.request
    import urllib.error
    req = urllib.request.Request(
        "http://127.0.0.1:%d/v1/realtime/calls" % port,
        data=b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        headers={"Content-Type": "application/sdp"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=STEP_TIMEOUT) as res:
            sys.exit("front_door: a WebRTC call in demo mode answered %d" % res.status)
    except urllib.error.HTTPError as e:
        body = json.loads(e.read().decode())
        code = body.get("error", {}).get("code")
        if e.code != 502 or code != "upstream_rejected":
            sys.exit("front_door: a WebRTC call in demo mode: %d %s" % (e.code, body))
    print("front_door: a WebRTC call in demo mode is refused: 502 upstream_rejected")


def main():
    if "--print-test-command" in sys.argv:
        print(readme_command("test command"))
        return
    command = readme_command("run command")
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1")
    env.pop("OPENAI_API_KEY", None)
    if os.path.exists(os.path.join(ROOT, ".env")):
        sys.exit("front_door: a .env file is present; the check wants a fresh clone")
    print("front_door: running the README's run command: %s (PORT=%d)" % (command, port))
    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    log = open(os.path.join(ROOT, "target", "front-door.log"), "w+")
    proc = subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ok = False
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while health(port) != 200:
            if proc.poll() is not None:
                sys.exit("front_door: the command exited with %s before /health answered" % proc.returncode)
            if time.monotonic() > deadline:
                sys.exit("front_door: /health did not answer 200 within %d s" % START_TIMEOUT)
            time.sleep(0.5)
        print("front_door: /health answers 200")
        conversation(port)
        webrtc_in_demo(port)
        # Ctrl-C: SIGINT to the whole foreground group, cargo and the relay alike.
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=STEP_TIMEOUT)
        log.seek(0)
        text = log.read()
        if code != 0:
            sys.exit("front_door: exit status %s after SIGINT" % code)
        for needle in ("demo mode", "draining", "stopped:"):
            if needle not in text:
                sys.exit("front_door: the log has no %r line" % needle)
        print("front_door: SIGINT drained the relay; exit status 0")
        ok = True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if not ok:
            log.seek(0)
            print("front_door: the command's output, last 4000 characters:")
            print(log.read()[-4000:])


if __name__ == "__main__":
    main()
