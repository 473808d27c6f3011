#!/usr/bin/env python3
"""Reliability, security and load suite: starts the full multi-process stack on real services on
this machine, attacks it, and prints a table of what held.

Run it with `reliability/run.sh [--quick] [--profile release|debug] [SECTION ...]`.

Sections (default: all in a full run; badinput, security and a small load with --quick):
  badinput  corrupt, truncated, empty, non-media, audio-less, unsupported files; over-limit
            uploads; malformed multipart; oversized headers; hostile file names
  security  broken object-level authorization; forged JWTs; the login rate limit;
            SQL-injection-shaped input; secrets in logs; what the k8s manifests expose
  load      N concurrent clients uploading M short videos each
  faults    kill -9 of the converter mid-conversion; RabbitMQ, MongoDB-wire server, MySQL and
            SMTP taken down under traffic and brought back
  fuzz      reliability/fuzz.sh for a bounded time (cargo-fuzz on converter::transcode)
  memory    peak RSS of `converter convert` on a 300 MiB AVI holding its PCM in one chunk and
            on a 2 GiB WAV (reliability/memory.py; needs no stack)

Everything runs against PRIVATE backing services started here (a RabbitMQ node, a MariaDB
server, a SecantusDB and the SMTP sink, on free ports under target/reliability), never the
machine's shared MariaDB or RabbitMQ, so they can be stopped and restarted at will. The four
services are started by scripts/stack.sh (binaries from target/release, or target/debug with
--profile debug).

Prints `| scenario | expectation | result | held |`, writes it to target/reliability/results.md
and exits non-zero when anything did not hold.
"""
import argparse
import base64
import concurrent.futures as futures
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

import pymongo
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "reliability"
MEDIA = WORK / "media"
FIXTURES = ROOT / "converter" / "tests" / "fixtures"
STACK_SH = ROOT / "scripts" / "stack.sh"

# Limits the stack runs with (small so that the over-limit and rate-limit cases are quick).
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
LOGIN_WINDOW_SECONDS = 10
LOGIN_MAX_FAILURES_PER_EMAIL = 5
LOGIN_MAX_FAILURES_PER_ADDRESS = 20
GATEWAY_LIMITS_RELAXED = {"LOGINS_PER_MINUTE": "100000", "UPLOADS_PER_MINUTE": "100000",
                          "MAX_CONCURRENT_UPLOADS": "64"}
GATEWAY_LIMITS_TESTED = {"LOGINS_PER_MINUTE": "5", "UPLOADS_PER_MINUTE": "3",
                         "MAX_CONCURRENT_UPLOADS": "1"}
# Retry schedules long enough to ride out the outages the faults section causes (~5-15 s).
RETRY_DELAYS = "2s,5s,10s,20s"

# Every secret the run handles; none may appear in any service log line.
SECRETS = set()
SECRETS_LOCK = threading.Lock()


def remember_secret(value):
    if value and len(value) >= 8:
        with SECRETS_LOCK:
            SECRETS.add(value)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The converter's queue (a quorum queue, which counts the deliveries its consumer died holding).
CONVERTER_QUEUE = "converter.quorum"
CONVERTER_LEASE_TTL_SECONDS = 6
DELIVERY_LIMIT = 3


def wait_until(predicate, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the predicate's services may be restarting
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


def stop_pid(pid, grace=30):
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the process to go."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------------------------
# A minimal AMQP 0-9-1 client (stdlib only): enough to read a queue's message count.


class Amqp:
    FRAME_END = b"\xce"

    def __init__(self, port, user, password, vhost="/"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self._expect(0, 10, 10)  # Connection.Start
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        self._method(0, 10, 11, struct.pack(">I", 0) + self._short("PLAIN")
                     + self._long(response) + self._short("en_US"))
        tune = self._expect(0, 10, 30)
        channel_max, frame_max, _ = struct.unpack(">HIH", tune[:8])
        self._method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))
        self._method(0, 10, 40, self._short(vhost) + self._short("") + b"\x00")
        self._expect(0, 10, 41)
        self.channel = 0
        self._open_channel()

    @staticmethod
    def _short(text):
        data = text.encode()
        return bytes([len(data)]) + data

    @staticmethod
    def _long(data):
        return struct.pack(">I", len(data)) + data

    def _method(self, channel, class_id, method_id, args):
        payload = struct.pack(">HH", class_id, method_id) + args
        self.sock.sendall(struct.pack(">BHI", 1, channel, len(payload)) + payload + self.FRAME_END)

    def _read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("AMQP connection closed")
            data += chunk
        return data

    def _read_method(self):
        while True:
            kind, channel, size = struct.unpack(">BHI", self._read_exact(7))
            payload = self._read_exact(size)
            self._read_exact(1)
            if kind == 1:
                class_id, method_id = struct.unpack(">HH", payload[:4])
                return channel, class_id, method_id, payload[4:]

    def _expect(self, channel, class_id, method_id):
        got_channel, got_class, got_method, args = self._read_method()
        if (got_class, got_method) == (20, 40):  # Channel.Close: e.g. 404 NOT_FOUND
            code = struct.unpack(">H", args[:2])[0]
            self._method(got_channel, 20, 41, b"")
            raise LookupError(f"channel closed by the broker with code {code}")
        if (got_class, got_method) == (10, 50):
            raise ConnectionError("connection closed by the broker")
        if (got_class, got_method) != (class_id, method_id):
            raise ConnectionError(f"unexpected AMQP method {got_class}.{got_method}")
        return args

    def _open_channel(self):
        self.channel += 1
        self._method(self.channel, 20, 10, self._short(""))
        self._expect(self.channel, 20, 11)

    def message_count(self, queue):
        """Messages ready in `queue`, or None when it does not exist."""
        args = struct.pack(">H", 0) + self._short(queue) + bytes([0b00000001]) + struct.pack(">I", 0)
        self._method(self.channel, 50, 10, args)
        try:
            reply = self._expect(self.channel, 50, 11)
        except LookupError:
            self._open_channel()
            return None
        name_len = reply[0]
        messages, _consumers = struct.unpack(">II", reply[1 + name_len:9 + name_len])
        return messages

    def publish(self, exchange, routing_key, body, message_id):
        """A persistent JSON message, as the services publish them (without a confirm)."""
        self._method(self.channel, 60, 40, struct.pack(">H", 0) + self._short(exchange)
                     + self._short(routing_key) + b"\x00")
        # Property flags: content-type (bit 15), delivery-mode (bit 12), message-id (bit 7).
        properties = self._short("application/json") + bytes([2]) + self._short(message_id)
        header = struct.pack(">HHQH", 60, 0, len(body), 0x9080) + properties
        self.sock.sendall(struct.pack(">BHI", 2, self.channel, len(header)) + header + self.FRAME_END)
        self.sock.sendall(struct.pack(">BHI", 3, self.channel, len(body)) + body + self.FRAME_END)

    def purge(self, queue):
        self._method(self.channel, 50, 30, struct.pack(">H", 0) + self._short(queue) + b"\x00")
        return struct.unpack(">I", self._expect(self.channel, 50, 31)[:4])[0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# Private backing services.


class PrivateRabbit:
    """A RabbitMQ node of our own (never the machine's): stopped and started at will."""

    NODE = "mp3rel@localhost"

    def __init__(self, base):
        self.dir = base / "rabbitmq"
        self.port = free_port()
        self.dist_port = free_port()
        self.user = "mp3rel"
        self.password = "amqp-" + secrets.token_hex(12)
        remember_secret(self.password)
        self.process = None

    @property
    def url(self):
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/%2f"

    def _env(self):
        env = dict(os.environ)
        env.update({
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": self.NODE,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        })
        return env

    def setup(self):
        self.kill_stale()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"default_user = {self.user}\ndefault_pass = {self.password}\n"
            "loopback_users = none\nlog.file.level = info\n")

    def kill_stale(self):
        """A node of a run that died is still registered under our name: end it by its pid."""
        pidfile = self.dir / "pid"
        if pidfile.exists():
            try:
                stop_pid(int(pidfile.read_text().strip()), grace=20)
            except ValueError:
                pass

    def start(self, timeout=240):
        executable = "/usr/lib/rabbitmq/bin/rabbitmq-server"
        if not os.path.exists(executable):  # not Debian's layout
            executable = shutil.which("rabbitmq-server") or executable
        out = open(self.dir / "server.out", "ab")
        self.process = subprocess.Popen([executable], env=self._env(), cwd=self.dir, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        wait_until(self.answers, timeout, interval=0.5, what="private RabbitMQ")

    def answers(self):
        client = Amqp(self.port, self.user, self.password)
        client.close()
        return True

    def beam_pid(self):
        try:
            return int((self.dir / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        """Graceful stop (SIGTERM to the node, as `rabbitmqctl stop` does, without its slow CLI)."""
        pid = self.beam_pid()
        if pid:
            stop_pid(pid, grace=60)
        if self.process:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process = None
        (self.dir / "pid").unlink(missing_ok=True)

    def count(self, queue):
        client = Amqp(self.port, self.user, self.password)
        try:
            return client.message_count(queue)
        finally:
            client.close()


class PrivateMariaDB:
    def __init__(self, base):
        self.dir = base / "mariadb"
        self.port = free_port()
        self.user = "mp3rel"
        self.password = "db-" + secrets.token_hex(12)
        remember_secret(self.password)
        self.process = None

    @property
    def url(self):
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{self.port}/mp3rel"

    def setup(self):
        pidfile = self.dir / "pid"
        if pidfile.exists():
            try:
                stop_pid(int(pidfile.read_text().strip()), grace=20)
            except ValueError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.dir / 'data'}",
                        "--auth-root-authentication-method=normal", "--user=root",
                        "--skip-test-db"], check=True, stdout=subprocess.DEVNULL,
                       stderr=open(self.dir / "install.log", "wb"))
        self.start()
        self.sql(f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
                 f"GRANT ALL ON *.* TO '{self.user}'@'127.0.0.1';")

    def start(self, timeout=60):
        self.process = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.dir / 'data'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.dir / 'sock'}",
             f"--pid-file={self.dir / 'pid'}", "--user=root", "--skip-log-bin",
             "--skip-name-resolve", "--innodb-buffer-pool-size=64M"],
            stdout=open(self.dir / "server.log", "ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.sql("SELECT 1") is not None, timeout, what="private MariaDB")

    def sql(self, statement):
        result = subprocess.run(["mysql", "-uroot", "-h127.0.0.1", f"-P{self.port}", "-N", "-B",
                                 "-e", statement], capture_output=True, text=True, timeout=20)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return result.stdout

    def stop(self):
        if self.process:
            stop_pid(self.process.pid, grace=60)
            self.process.wait(timeout=10)
            self.process = None


class Stack:
    """The four services plus SecantusDB and the SMTP sink, through scripts/stack.sh."""

    SERVICES = ("auth", "gateway", "converter", "notification")

    def __init__(self, base, rabbit, mariadb, profile):
        self.dir = base / "stack"
        self.profile = profile
        self.ports = {name: free_port() for name in
                      ("gateway", "gateway_admin", "auth_grpc", "auth", "converter", "notification", "mongo",
                       "smtp")}
        self.signing_key = base / "signing-key.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(self.signing_key)],
                       check=True, capture_output=True)
        pem = self.signing_key.read_text()
        for line in pem.splitlines():
            if "-----" not in line:
                remember_secret(line.strip())
        self.env = dict(os.environ)
        self.env.update({
            "STACK_DIR": str(self.dir),
            "STACK_BUILD": "0",
            "STACK_PROFILE": profile,
            "GATEWAY_PORT": str(self.ports["gateway"]),
            "GATEWAY_ADMIN_PORT": str(self.ports["gateway_admin"]),
            "AUTH_GRPC_PORT": str(self.ports["auth_grpc"]),
            "AUTH_HTTP_PORT": str(self.ports["auth"]),
            "CONVERTER_HTTP_PORT": str(self.ports["converter"]),
            "NOTIFICATION_HTTP_PORT": str(self.ports["notification"]),
            "MONGO_PORT": str(self.ports["mongo"]),
            "SMTP_PORT": str(self.ports["smtp"]),
            "MONGO_STORAGE": str(base / "mongo-data"),
            "STACK_DATABASE_URL": mariadb.url,
            "STACK_AMQP_URL": rabbit.url,
            "MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            "SIGNING_KEY_PEM": pem,
            "LOGIN_FAILURE_WINDOW": f"{LOGIN_WINDOW_SECONDS}s",
            "LOGIN_MAX_FAILURES_PER_EMAIL": str(LOGIN_MAX_FAILURES_PER_EMAIL),
            "LOGIN_MAX_FAILURES_PER_ADDRESS": str(LOGIN_MAX_FAILURES_PER_ADDRESS),
            "CONVERTER_RETRY_DELAYS": RETRY_DELAYS,
            "NOTIFICATION_RETRY_DELAYS": RETRY_DELAYS,
            "CONVERTER_CONCURRENCY": "2",
            # A killed converter's job is taken up again after one lease time (default 30 s), and
            # given up after DELIVERY_LIMIT + 1 deaths: short, so the poison scenario is quick.
            "CONVERTER_LEASE_TTL": f"{CONVERTER_LEASE_TTL_SECONDS}s",
            "DELIVERY_LIMIT": str(DELIVERY_LIMIT),
            # The gateway's own per-address / per-user limits, out of the way of the load and
            # fault traffic; the "gateway rate limits" scenario restarts it with low ones.
            **GATEWAY_LIMITS_RELAXED,
            "LOG_FORMAT": "json",
            "RUST_LOG": "info",
        })
        shutil.rmtree(base / "mongo-data", ignore_errors=True)

    def sh(self, *args, timeout=600, extra_env=None):
        result = subprocess.run([str(STACK_SH), *args], env={**self.env, **(extra_env or {})},
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def start(self):
        self.sh("start")

    def stop(self):
        self.sh("stop")

    def pid(self, name):
        try:
            return int((self.dir / "pids" / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def readyz(self, name):
        # The gateway's health endpoints are on its internal listener, never the public one.
        port = self.ports["gateway_admin" if name == "gateway" else name]
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return None

    def wait_ready(self, names, timeout=120):
        for name in names:
            wait_until(lambda n=name: self.readyz(n) == 200, timeout, what=f"{name} ready")

    @property
    def mail_dir(self):
        return self.dir / "mail"

    def log_files(self):
        return [self.dir / "logs" / f"{name}.log" for name in self.SERVICES]


# --------------------------------------------------------------------------------------------
# HTTP client for the gateway.


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def is_json_error(self):
        body = self.json()
        return isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(
            body.get("message"), str) and body["message"] != ""

    def summary(self):
        body = self.json()
        if isinstance(body, dict) and "message" in body:
            return f"{self.status} {body['message'][:90]}"
        return f"{self.status}"


class Api:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            conn.close()

    def authed(self, method, path, token, body=None, headers=None, timeout=60):
        headers = dict(headers or {})
        headers["Authorization"] = f"Bearer {token}"
        return self.request(method, path, body, headers, timeout)


def multipart(parts, boundary=None):
    """parts: (name, filename or None (bytes or str), content type or None, data)."""
    boundary = boundary or "----rel" + uuid.uuid4().hex
    out = []
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'.encode()
        if isinstance(filename, tuple):  # ("raw", parameters as sent)
            disposition += b"; " + filename[1]
        elif filename is not None:
            raw = filename if isinstance(filename, bytes) else filename.encode()
            disposition += b'; filename="' + raw + b'"'
        out.append(f"--{boundary}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n")
        if content_type:
            out.append(f"Content-Type: {content_type}\r\n".encode())
        out.append(b"\r\n" + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


class User:
    def __init__(self, api, prefix):
        self.api = api
        self.email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
        self.password = f"pw-{secrets.token_urlsafe(14)}"
        remember_secret(self.password)
        remember_secret(base64.b64encode(f"{self.email}:{self.password}".encode()).decode())
        response = api.request("POST", "/signup", json.dumps(
            {"email": self.email, "password": self.password}), {"Content-Type": "application/json"})
        if response.status != 201:
            raise RuntimeError(f"signup: {response.summary()}")
        self.id = response.json()["user_id"]
        self.token = self.login()

    def login(self, password=None):
        response = login(self.api, self.email, password or self.password)
        if response.status != 200:
            raise RuntimeError(f"login: {response.summary()}")
        token = response.body.decode().strip()
        remember_secret(token)
        remember_secret(token.rsplit(".", 1)[-1])
        return token

    def upload(self, filename, data, content_type="video/mp4", timeout=120):
        body, ctype = multipart([("file", filename, content_type, data)])
        return self.api.authed("POST", "/upload", self.token, body, {"Content-Type": ctype},
                               timeout=timeout)

    def job(self, job_id):
        response = self.api.authed("GET", f"/jobs/{job_id}", self.token, timeout=15)
        return response.json() if response.status == 200 else None


def login(api, email, password):
    remember_secret(password)
    credentials = base64.b64encode(f"{email}:{password}".encode()).decode()
    remember_secret(credentials)
    return api.request("POST", "/login", headers={"Authorization": f"Basic {credentials}"})


# --------------------------------------------------------------------------------------------
# Media.


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def prepare_media(long_minutes, with_long):
    MEDIA.mkdir(parents=True, exist_ok=True)

    def gen(name, *args):
        path = MEDIA / name
        if not path.exists() or path.stat().st_size == 0:
            log(f"generating {name}")
            tmp = MEDIA / f".tmp-{name}"
            ffmpeg(*args, str(tmp))
            tmp.rename(path)
        return path

    av = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2",
          "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2"]
    gen("short.mp4", *av, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "96k",
        "-shortest", "-movflags", "+faststart", "-f", "mp4")
    seconds = int(long_minutes * 60)
    if with_long:
        # 48 kHz stereo at a low AAC bitrate: small to upload, long to convert (~10 s here).
        gen(f"long-{long_minutes}m.mp4", "-f", "lavfi", "-i", f"color=c=black:s=16x16:r=1:d={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "32k", "-ac", "2",
            "-shortest", "-movflags", "+faststart", "-f", "mp4")
    gen("flv_aac.flv", *av, "-c:v", "flv1", "-c:a", "aac", "-shortest", "-f", "flv")
    gen("mpegts_mp2.ts", *av, "-c:v", "mpeg2video", "-c:a", "mp2", "-shortest", "-f", "mpegts")
    gen("asf_wma.wmv", *av, "-c:v", "wmv2", "-c:a", "wmav2", "-shortest", "-f", "asf")
    corrupt = MEDIA / "corrupt_header.mp4"
    if not corrupt.exists():
        data = bytearray((MEDIA / "short.mp4").read_bytes())
        noise = random.Random(7)
        # The index (moov, at the start after ftyp with +faststart) overwritten with noise.
        for i in range(40, min(len(data), 3000)):
            data[i] = noise.randrange(256)
        corrupt.write_bytes(bytes(data))
    return {
        "short": (MEDIA / "short.mp4").read_bytes(),
        "long": (MEDIA / f"long-{long_minutes}m.mp4").read_bytes() if with_long else b"",
    }


# --------------------------------------------------------------------------------------------
# What the system stored: MP3s (GridFS), events, mails, logs.


class Observer:
    def __init__(self, stack, rabbit):
        self.stack = stack
        self.rabbit = rabbit
        self.mongo = pymongo.MongoClient(f"mongodb://127.0.0.1:{stack.ports['mongo']}",
                                         serverSelectionTimeoutMS=5000)
        self._mail_cache = {}

    def mp3_count(self, job_id):
        return self.mongo["mp3s"]["fs.files"].count_documents({"metadata.job_id": str(job_id)})

    def video_files(self):
        return (self.mongo["videos"]["fs.files"].count_documents({}),
                self.mongo["videos"]["fs.chunks"].count_documents({}))

    def started_count(self, job_id):
        return self.mongo["jobs"]["events"].count_documents(
            {"job_id": str(job_id), "event_type": "conversion.started"})

    def mails(self):
        directory = self.stack.mail_dir
        if directory.exists():
            for path in directory.glob("*.eml"):
                if path.name not in self._mail_cache:
                    try:
                        self._mail_cache[path.name] = path.read_bytes().decode("utf-8", "replace")
                    except OSError:
                        continue
        return self._mail_cache

    def mail_count(self, job_id):
        needle = str(job_id)
        return sum(1 for text in self.mails().values() if needle in text)

    def dead_letters(self):
        return self.rabbit.count("jobs.dead-letter")

    def queue(self, name):
        return self.rabbit.count(name)

    def dead_letter_log_lines(self):
        lines = []
        for path in self.stack.log_files():
            if path.exists():
                for line in path.read_text(errors="replace").splitlines():
                    # Exhausted retries, and deliveries the broker gave up past the delivery
                    # limit (a consumer died holding them every time: the poison scenario).
                    if any(mark in line for mark in ("retries exhausted", "dead-lettered",
                                                     "died on every delivery",
                                                     "gave a delivery up")):
                        lines.append(line)
        return lines


def wait_jobs(user_of_job, timeout, want=("succeeded", "failed")):
    """Polls each job until its status is in `want`; returns job id -> last state seen."""
    states = {}
    pending = set(user_of_job)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            try:
                state = user_of_job[job_id].job(job_id)
            except OSError:
                state = None
            if state:
                states[job_id] = state
                if state["status"] in want:
                    pending.discard(job_id)
        if pending:
            time.sleep(0.3)
    return states


def audit_jobs(observer, user_of_job, timeout):
    """Every job succeeded, with exactly one MP3 and exactly one mail. Returns problems."""
    states = wait_jobs(user_of_job, timeout)
    problems = []
    succeeded = [j for j in user_of_job if states.get(j, {}).get("status") == "succeeded"]
    for job_id in user_of_job:
        status = states.get(job_id, {}).get("status", "unknown")
        if status != "succeeded":
            reason = states.get(job_id, {}).get("failure_reason")
            problems.append(f"job {job_id} {status}" + (f" ({reason})" if reason else ""))
    # Mails follow the success event: wait for them, then a moment for any duplicate.
    try:
        wait_until(lambda: all(observer.mail_count(j) >= 1 for j in succeeded), 90,
                   interval=0.5, what="mails")
    except TimeoutError:
        pass
    time.sleep(3)
    for job_id in succeeded:
        mp3s, mails = observer.mp3_count(job_id), observer.mail_count(job_id)
        if mp3s != 1:
            problems.append(f"job {job_id}: {mp3s} MP3s")
        if mails != 1:
            problems.append(f"job {job_id}: {mails} mails")
    return problems, states


class ReadyWatch:
    """Polls /readyz of some services in the background and remembers what it saw."""

    def __init__(self, stack, names):
        self.stack = stack
        self.seen = {name: [] for name in names}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.is_set():
            for name in self.seen:
                self.seen[name].append((time.monotonic(), self.stack.readyz(name)))
            time.sleep(0.25)

    def stop(self):
        self.stop_event.set()
        self.thread.join(5)

    def unready_between(self, name, start, end):
        return any(status != 200 for t, status in self.seen[name] if start <= t <= end)


class RssSampler:
    def __init__(self, pids):
        self.pids = pids
        self.peak = {name: 0.0 for name in pids}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def status_mib(pid, key):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self):
        while not self.stop_event.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], self.status_mib(pid, "VmRSS"))
            time.sleep(0.1)

    def stop(self):
        self.stop_event.set()
        self.thread.join(5)


# --------------------------------------------------------------------------------------------
# The suite.


class Suite:
    def __init__(self, args):
        self.args = args
        self.rows = []
        self.metrics = []
        self.stack = None
        # Services that died by themselves during a scenario (which then restarted them).
        self.crashes = []

    # ---- bookkeeping

    def record(self, scenario, expectation, held, result):
        self.rows.append((scenario, expectation, result, held))
        log(f"{'held' if held else 'DID NOT HOLD'}: {scenario}: {result}")

    def scenario(self, name, expectation, timeout, body):
        """Runs `body()` -> (held, result) with a time limit; an exception does not hold."""
        outcome = {}

        def run():
            try:
                outcome["value"] = body()
            except Exception as e:  # noqa: BLE001 - reported in the table
                outcome["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc(file=sys.stderr)

        log(f"scenario: {name}")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            self.record(name, expectation, False, f"timed out after {timeout}s")
        elif "error" in outcome:
            self.record(name, expectation, False, outcome["error"])
        else:
            held, result = outcome["value"]
            self.record(name, expectation, held, result)

    # ---- set-up and tear-down

    def setup(self):
        WORK.mkdir(parents=True, exist_ok=True)
        base = WORK / "run"
        base.mkdir(parents=True, exist_ok=True)
        if not self.args.no_build:
            log(f"building the services ({self.args.profile})")
            profile = ["--release"] if self.args.profile == "release" else []
            subprocess.run(["cargo", "build", *profile, "--locked", "-p", "auth", "-p", "gateway",
                            "-p", "converter", "-p", "notification"], cwd=ROOT, check=True)
        self.media = prepare_media(self.args.long_minutes, "faults" in self.args.sections)
        self.rabbit = PrivateRabbit(base)
        self.mariadb = PrivateMariaDB(base)
        log("starting a private RabbitMQ and a private MariaDB")
        self.rabbit.setup()
        self.rabbit.start()
        self.mariadb.setup()
        self.stack = Stack(base, self.rabbit, self.mariadb, self.args.profile)
        log(f"starting the stack in {self.stack.dir} (gateway on {self.stack.ports['gateway']})")
        self.stack.start()
        self.api = Api(self.stack.ports["gateway"])
        self.observer = Observer(self.stack, self.rabbit)
        self.initial_pids = {name: self.stack.pid(name) for name in Stack.SERVICES}

    def teardown(self):
        if self.stack:
            try:
                self.stack.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stack stop: {e}")
        for service in ("mariadb", "rabbit"):
            backing = getattr(self, service, None)
            if backing:
                try:
                    backing.stop()
                except Exception as e:  # noqa: BLE001
                    log(f"{service} stop: {e}")

    # ---- bad input

    def section_badinput(self):
        user = User(self.api, "bad")
        short = self.media["short"]

        def expect_4xx(response, statuses):
            ok = response.status in statuses and response.is_json_error()
            return ok, response.summary()

        def empty():
            return expect_4xx(user.upload("empty.mp4", b""), {400})

        self.scenario("upload: empty file", "400 JSON {error, message}", 60, empty)

        def over_limit_streamed():
            before = self.observer.video_files()
            data = os.urandom(MAX_UPLOAD_BYTES + 256 * 1024)
            status, body = chunked_upload(self.api.port, user.token, "big.mp4", data)
            time.sleep(1)
            after = self.observer.video_files()
            parsed = json.loads(body) if body.startswith(b"{") else {}
            held = status == 413 and "error" in parsed and after == before
            return held, f"{status} {parsed.get('message', '')}; stored files/chunks {before}->{after}"

        self.scenario("upload: over MAX_UPLOAD_BYTES, chunked (no length)",
                      "413 JSON; nothing stored", 120, over_limit_streamed)

        def over_limit_declared():
            status, body, elapsed = declared_length_upload(self.api.port, user.token,
                                                           MAX_UPLOAD_BYTES * 64)
            parsed = json.loads(body) if body.startswith(b"{") else {}
            return status == 413 and "error" in parsed, f"{status} {parsed.get('message', '')} in {elapsed:.1f}s"

        self.scenario("upload: Content-Length 1 GiB over a 16 MiB limit",
                      "413 JSON before the body is stored", 60, over_limit_declared)

        self.scenario("upload: a part header that never ends (600 MB, chunked)",
                      "4xx JSON before the body ends; gateway RSS growth <= 16 MiB; still healthy", 180,
                      lambda: endless_part_header(self.api, user, self.stack.pid("gateway")))

        self.scenario("upload: malformed multipart", "400/415 JSON each; nothing stored", 120,
                      lambda: malformed_multipart(self.api, user, short, self.observer))
        self.scenario("request: oversized headers / URL", "431/400/414, gateway still healthy", 60,
                      lambda: oversized_headers(self.api.port))

        # Hostile file names: accepted, sanitised, converted (or, for bytes a header may not
        # carry at all, a 400).
        def hostile_names():
            names = {
                "../../../../etc/passwd.mp4": None,
                "..\\..\\windows\\system32\\x.mp4": None,
                "/etc/cron.d/evil.mp4": None,
                b"caf\xe9\xff\xfe.mp4": "\ufffd",
                ("raw", b"filename*=UTF-8''..%2F..%2Fa%01b%7F%E2%80%AEmp4.exe.mp4"): None,
                ("raw", b"filename*=UTF-8''%C0%AF%FF%FE.mp4"): "\ufffd",
            }
            raw_control = b"a\x01b\x7f.mp4"
            jobs, details = {}, []
            refused = user.upload(raw_control, short)
            raw_ok = refused.status == 202 or (refused.status == 400 and refused.is_json_error())
            details.append(f"raw control bytes in the header: {refused.summary()}")
            if refused.status == 202:
                jobs[refused.json()["job_id"]] = (user, True)
            for name, must_contain in names.items():
                response = user.upload(name, short)
                body = response.json() or {}
                stored = body.get("original_filename", "")
                ok = (response.status == 202 and "/" not in stored and "\\" not in stored
                      and ".." not in stored and not stored.startswith(".")
                      and all(ord(c) >= 32 and ord(c) != 127 and c != "\u202e" for c in stored)
                      and (must_contain is None or must_contain in stored))
                shown = name[1].decode() if isinstance(name, tuple) else name
                details.append(f"{shown!r}->{stored!r}" + ("" if ok else f" ({response.summary()})"))
                jobs[body.get("job_id", f"refused-{len(jobs)}")] = (user, ok)
            states = wait_jobs({j: u for j, (u, _) in jobs.items() if not j.startswith("refused")}, 120)
            downloads_ok = True
            for job_id in jobs:
                if job_id.startswith("refused"):
                    continue
                if states.get(job_id, {}).get("status") != "succeeded":
                    downloads_ok = False
                    details.append(f"job {job_id} {states.get(job_id, {}).get('status')}")
                    continue
                mp3 = self.api.authed("GET", f"/jobs/{job_id}/mp3", user.token)
                disposition = mp3.headers.get("content-disposition", "")
                if mp3.status != 200 or "/" in disposition or "\\" in disposition:
                    downloads_ok = False
                    details.append(f"download {mp3.status} {disposition!r}")
            held = raw_ok and all(ok for _, ok in jobs.values()) and downloads_ok
            return held, "; ".join(details)

        self.scenario("upload: path traversal / invalid UTF-8 / control-char file names",
                      "202, name sanitised, converted, safe Content-Disposition", 180,
                      hostile_names)

        # Bad media: accepted (the gateway does not sniff), then a failed job with a reason.
        cases = [
            ("non-media (text)", "notes.mp4", b"just some text, not a video\n" * 40,
             "not a recognised"),
            ("random bytes", "random.mp4", (FIXTURES / "bad_random.bin").read_bytes(),
             "not a recognised"),
            ("corrupt header (mp4 index overwritten)", "corrupt.mp4",
             (MEDIA / "corrupt_header.mp4").read_bytes(), ""),
            ("truncated mp4 (data cut)", "cut.mp4",
             (FIXTURES / "bad_truncated_data.mp4").read_bytes(), "corrupt or truncated"),
            ("truncated mp4 (index lost)", "cut2.mp4",
             (FIXTURES / "bad_truncated_no_index.mp4").read_bytes(), "corrupt or truncated"),
            ("video without audio", "silent.mp4", (FIXTURES / "bad_no_audio.mp4").read_bytes(),
             "no audio track"),
            ("unsupported codec AC-3 (mkv)", "ac3.mkv", (FIXTURES / "bad_ac3.mkv").read_bytes(),
             "not supported"),
            ("unsupported codec AAC 5.1", "surround.mp4",
             (FIXTURES / "bad_aac_5_1.mp4").read_bytes(), "not supported"),
            ("unsupported container FLV", "clip.flv", (MEDIA / "flv_aac.flv").read_bytes(), ""),
            ("unsupported container MPEG-TS", "clip.ts", (MEDIA / "mpegts_mp2.ts").read_bytes(), ""),
            ("unsupported codec+container WMA/ASF", "clip.wmv", (MEDIA / "asf_wma.wmv").read_bytes(),
             ""),
        ]
        converter_pid = self.stack.pid("converter")
        submitted = {}
        for label, filename, data, _ in cases:
            response = user.upload(filename, data)
            submitted[label] = response
        jobs = {r.json()["job_id"]: user for r in submitted.values() if r.status == 202}
        states = wait_jobs(jobs, 180)
        for label, filename, data, expected in cases:
            response = submitted[label]

            def verdict(response=response, expected=expected):
                if response.status != 202:
                    return response.status in (400, 415, 422) and response.is_json_error(), response.summary()
                job_id = response.json()["job_id"]
                state = states.get(job_id, {})
                reason = state.get("failure_reason") or ""
                held = (state.get("status") == "failed" and len(reason) > 10
                        and expected.lower() in reason.lower())
                return held, f"{state.get('status')}: {reason}"

            self.scenario(f"bad file: {label}", "failed job with a human-readable reason", 10, verdict)

        def aftermath():
            time.sleep(4)  # would-be redeliveries have time to show
            started = {j: self.observer.started_count(j) for j in jobs}
            mails = {j: self.observer.mail_count(j) for j in jobs}
            queue = self.observer.queue(CONVERTER_QUEUE)
            dead = self.observer.dead_letters()
            alive = self.stack.pid("converter") == converter_pid and pid_alive(converter_pid)
            redelivered = {j: n for j, n in started.items() if n != 1}
            wrong_mails = {j: n for j, n in mails.items() if n != 1}
            held = alive and not redelivered and queue == 0 and dead == 0 and not wrong_mails
            return held, (f"converter alive (same pid): {alive}; conversion attempts per job: "
                          f"{sorted(set(started.values()))}; converter queue {queue}; "
                          f"dead-letter queue {dead}; one failure mail per job: {not wrong_mails}")

        self.scenario("bad files: no crash, no redelivery, nothing dead-lettered",
                      "converter alive, 1 attempt/job, queues empty, 1 mail/job", 60, aftermath)
        self.scenario("fuzz finding replayed: MP3 whose re-encode aborted LAME, ?bitrate=128",
                      "job ends (converted or failed with a reason), converter alive", 120,
                      lambda: poison_input(self, user))

    # ---- security

    def section_security(self):
        alice = User(self.api, "alice")
        bob = User(self.api, "bob")
        self.scenario("BOLA: second user vs first user's job and files",
                      "404 for list/status/stream/download/delete; owner unaffected", 180,
                      lambda: bola(self.api, self.observer, alice, bob, self.media["short"]))
        for name, expectation, body in jwt_attacks(self.api, self.stack, alice, bob):
            self.scenario(f"JWT: {name}", expectation, 30, body)
        self.scenario("SQL-injection-shaped input", "4xx (never 5xx); users table intact", 120,
                      lambda: sql_injection(self.api, self.mariadb, alice))
        self.scenario("k8s: only the gateway exposed", "Services ClusterIP, Ingress → gateway (+ the dashboards Ingress)",
                      30, k8s_exposure)
        self.scenario("internal endpoints not public",
                      "gateway's public port: /metrics, /readyz, /healthz 404; its admin port: 200", 30,
                      lambda: internal_endpoints(self.stack))
        self.scenario("login rate limit (auth: per email, per address)",
                      "429 + Retry-After after the limits; lifted after the window",
                      120, lambda: rate_limit(self.api, alice))
        self.scenario("gateway rate limits (logins/min per address, uploads/min and in progress per user)",
                      "429 JSON + Retry-After beyond each limit", 180,
                      lambda: gateway_limits(self))

    def secrets_in_logs(self):
        def scan():
            with SECRETS_LOCK:
                secrets_now = sorted(SECRETS)
            lines = found = 0
            leaks = []
            for path in self.stack.log_files() + [self.stack.dir / "logs" / "smtp.log"]:
                if not path.exists():
                    continue
                for line in path.read_text(errors="replace").splitlines():
                    lines += 1
                    for secret in secrets_now:
                        if secret in line:
                            found += 1
                            leaks.append(f"{path.name}: …{line[max(0, line.find(secret) - 60):][:140]}")
            return found == 0, (f"{lines} log lines of 4 services + SMTP sink, {len(secrets_now)} "
                                f"secrets (passwords, tokens, Basic credentials, signing key, AMQP "
                                f"and MySQL passwords): {found} found" +
                                ("; " + " | ".join(leaks[:3]) if leaks else ""))

        self.scenario("no secret or password in any log line", "0 occurrences", 120, scan)

    # ---- load

    def section_load(self):
        clients, per_client = self.args.clients, self.args.videos
        self.scenario(f"load: {clients} clients × {per_client} short videos",
                      "0 errors; every job converted; 1 MP3 + 1 mail per job", 900,
                      lambda: load(self, clients, per_client))

    # ---- faults

    def section_faults(self):
        self.scenario("fault: kill -9 converter mid-conversion, restart",
                      "all jobs converted, 1 MP3 + 1 mail each", 900, lambda: kill_converter(self))
        self.scenario("fault: converter kill -9'd on every delivery of one job (poison), restarted",
                      "that job failed with the reason and 1 mail; the others converted, 1 MP3 + 1 mail each",
                      900, lambda: poison_delivery(self))
        self.scenario("fault: the same job.submitted delivered twice at once (at-least-once)",
                      "still exactly 1 MP3 + 1 mail", 300, lambda: duplicate_delivery(self))
        self.scenario("fault: RabbitMQ stopped during 20 uploads, started",
                      "/readyz 503 meanwhile; accepted jobs converted, 1 MP3 + 1 mail each", 900,
                      lambda: rabbit_outage(self))
        self.scenario("fault: MongoDB-wire server restarted under traffic",
                      "503 not 500 meanwhile, /readyz 503; reconnects; accepted jobs converted",
                      600, lambda: mongo_outage(self))
        self.scenario("fault: MySQL restarted under traffic",
                      "auth /readyz 503 and logins 503 meanwhile; logins work again", 600,
                      lambda: mysql_outage(self))
        self.scenario("fault: SMTP server down, then back",
                      "mails delivered after it returns, exactly 1 per job", 600,
                      lambda: smtp_outage(self))

    # ---- fuzz

    def section_fuzz(self):
        seconds = self.args.fuzz_seconds

        def fuzz():
            result = subprocess.run([str(ROOT / "reliability" / "fuzz.sh"), str(seconds)],
                                    capture_output=True, text=True)
            tail = [line for line in result.stderr.splitlines()
                    if "stat::number_of_executed_units" in line or "FOUND" in line
                    or "no crash" in line or "error" in line.lower()]
            return result.returncode == 0, "; ".join(tail[-3:]) or result.stderr[-300:]

        self.scenario(f"fuzz: converter::transcode for {seconds}s (libFuzzer + ASan)",
                      "no crash", seconds + 2400, fuzz)

    def section_memory(self):
        sys.path.insert(0, str(ROOT / "reliability"))
        import memory  # reliability/memory.py

        target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
        converter = target / self.args.profile / "converter"
        if not self.args.no_build and self.stack is None:
            profile = ["--release"] if self.args.profile == "release" else []
            subprocess.run(["cargo", "build", *profile, "--locked", "-p", "converter"], cwd=ROOT,
                           check=True)
        log(f"memory: measuring {converter} (inputs generated in the temp dir, then deleted)")
        for row in memory.measure(converter, avi_mib=300, wav_mib=2048, limit_mib=64):
            scenario, expectation, result, held = row
            self.record(scenario, expectation, held, result)

    # ---- global checks

    def final_checks(self):
        def dead_letter():
            dead = self.observer.dead_letters()
            lines = self.observer.dead_letter_log_lines()
            return dead == len(lines), (f"dead-letter queue {dead}; 'retries exhausted' / "
                                        f"dead-lettered / given-up log lines {len(lines)}")

        self.scenario("dead-letter queue holds only what exhausted its retries or was given up",
                      "DLQ count = exhausted or given-up deliveries logged", 60, dead_letter)

        running, at_shutdown = self.panics()

        def no_crash():
            problems = []
            for name in Stack.SERVICES:
                pid = self.stack.pid(name)
                if not pid or not pid_alive(pid):
                    problems.append(f"{name} not running")
            problems += [f"panic in {where}" for where in running]
            problems += self.crashes
            restarted = [n for n in Stack.SERVICES if self.stack.pid(n) != self.initial_pids[n]]
            return not problems, ("; ".join(problems) or "all 4 running, no panic while serving") + (
                f"; restarted by the suite: {', '.join(restarted)}" if restarted else "")

        self.scenario("no service crashed", "4 processes alive, no panic in logs", 30, no_crash)
        if at_shutdown:
            self.scenario("graceful stop (SIGTERM) without panic", "no panic after 'stopped'", 10,
                          lambda: (False, "; ".join(sorted(set(at_shutdown)))))

    def panics(self):
        """Panics in the service logs: (while serving, during a graceful stop), as locations."""
        running, at_shutdown = [], []
        for path in self.stack.log_files():
            if not path.exists():
                continue
            stopping = False
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        message = str(json.loads(line).get("message", ""))
                    except (ValueError, AttributeError):
                        message = ""
                    if "shutdown signal received" in message or message.endswith("stopped"):
                        stopping = True
                    elif "listening" in message or "started" in message:
                        stopping = False
                match = re.search(r"panicked at (\S+?):(\d+)", line)
                if match:
                    where = f"{path.stem}: {match.group(1).split('/src/')[-1]}:{match.group(2)}"
                    (at_shutdown if stopping else running).append(where)
        return running, at_shutdown


# --------------------------------------------------------------------------------------------
# Bad-input helpers.


def poison_input(suite, user):
    """An input that once aborted the converter process (a LAME `assert`): with a supervisor
    restarting it, the unacknowledged message would come back and abort it again, forever."""
    stack = suite.stack
    data = (ROOT / "converter" / "fuzz" / "regressions" / "mp3-cbr-lame-assert.bin").read_bytes()
    pid = stack.pid("converter")
    body, ctype = multipart([("file", "poison.mp3", "audio/mpeg", data)])
    response = suite.api.authed("POST", "/upload?bitrate=128", user.token, body, {"Content-Type": ctype})
    if response.status != 202:
        return response.status < 500 and response.is_json_error(), response.summary()
    job_id = response.json()["job_id"]
    states = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and pid_alive(pid):
        states = wait_jobs({job_id: user}, 2)
        if states.get(job_id, {}).get("status") in ("succeeded", "failed"):
            break
    state = states.get(job_id, {})
    if not pid_alive(pid):
        suite.crashes.append("converter died on the poison input")
        # Clean up for the rest of the run: drop the poison message, bring the converter back.
        client = Amqp(suite.rabbit.port, suite.rabbit.user, suite.rabbit.password)
        try:
            purged = client.purge("converter")
        finally:
            client.close()
        stack.sh("start-service", "converter")
        stack.wait_ready(["converter"], 60)
        return False, (f"the converter process died (see converter.log); job left {state.get('status')}; "
                       f"{purged} message(s) purged and the converter restarted")
    ended = state.get("status") in ("succeeded", "failed")
    reason = state.get("failure_reason") or ""
    held = ended and (state["status"] == "succeeded" or len(reason) > 10)
    return held, f"{state.get('status')}" + (f": {reason}" if reason else "") + "; converter alive (same pid)"


def chunked_upload(port, token, filename, data):
    """Streams a multipart body with Transfer-Encoding: chunked (no declared length)."""
    body, ctype = multipart([("file", filename, "video/mp4", data)])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/upload")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", ctype)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    try:
        for i in range(0, len(body), 256 * 1024):
            piece = body[i:i + 256 * 1024]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused while sending: the answer is still there to read
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def declared_length_upload(port, token, declared):
    boundary = "----reldeclared"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    start = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    request = (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {declared}\r\n\r\n").encode() + head + os.urandom(64 * 1024)
    sock.sendall(request)
    status, body = read_http_response(sock)
    sock.close()
    return status, body, time.monotonic() - start


def read_http_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    if not data:
        return None, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if length:
        while len(rest) < int(length.group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, rest


def malformed_multipart(api, user, short, observer):
    auth = {"Authorization": f"Bearer {user.token}"}
    good, ctype = multipart([("file", "a.mp4", "video/mp4", short)])
    boundary = ctype.split("boundary=")[1]
    cases = {
        "no boundary": (good, {"Content-Type": "multipart/form-data"}),
        "wrong boundary": (good, {"Content-Type": "multipart/form-data; boundary=nothere"}),
        "cut before the closing boundary": (good[: len(good) // 2], {"Content-Type": ctype}),
        "garbage body": (os.urandom(4096), {"Content-Type": ctype}),
        "not multipart (JSON)": (b'{"file": "x"}', {"Content-Type": "application/json"}),
        "no Content-Type": (good, {}),
        "no file part": (multipart([("quality", None, None, b"V2")])[0],
                         {"Content-Type": multipart([("quality", None, None, b"V2")], boundary)[1]}),
        "two file parts": (multipart([("file", "a.mp4", "video/mp4", short),
                                      ("file", "b.mp4", "video/mp4", short)], boundary)[0],
                           {"Content-Type": ctype}),
        "header line without colon": (
            f"--{boundary}\r\nContent-Disposition form-data name=file\r\n\r\nxx\r\n--{boundary}--\r\n".encode(),
            {"Content-Type": ctype}),
        "bad quality field": (multipart([("quality", None, None, b"V99"),
                                         ("file", "a.mp4", "video/mp4", short)], boundary)[0],
                              {"Content-Type": ctype}),
    }
    before = observer.video_files()
    results, held = [], True
    for name, (body, headers) in cases.items():
        response = api.request("POST", "/upload", body, {**auth, **headers})
        ok = response.status in (400, 415, 422) and response.is_json_error()
        held &= ok
        results.append(f"{name}: {response.status}" + ("" if ok else f" ({response.body[:80]!r})"))
    time.sleep(1)
    after = observer.video_files()
    held &= after == before
    return held, "; ".join(results) + f"; stored files/chunks {before}->{after}"


def endless_part_header(api, user, gateway_pid, total=600 * 1000 * 1000):
    """One authenticated chunked upload whose part header never ends: `total` bytes after the
    part's first header line, generated as sent, no blank line. Samples the gateway's VmRSS."""
    before = RssSampler.status_mib(gateway_pid, "VmRSS")
    hwm_before = RssSampler.status_mib(gateway_pid, "VmHWM")
    sampler = RssSampler({"gateway": gateway_pid})
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=60)
    head = ("--endless\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n"
            "X-Endless: ").encode()
    request = (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {user.token}\r\n"
               "Content-Type: multipart/form-data; boundary=endless\r\n"
               "Transfer-Encoding: chunked\r\n\r\n").encode() + f"{len(head):x}\r\n".encode() + head + b"\r\n"
    block = b"a" * (256 * 1024)
    framed = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    sent, answer = 0, {}
    start = time.monotonic()

    def read_answer():
        try:
            answer["status"], answer["body"] = read_http_response(sock)
        except OSError as e:
            answer["error"] = str(e)
        answer["sent"], answer["elapsed"] = sent, time.monotonic() - start

    reader = threading.Thread(target=read_answer, daemon=True)
    reader.start()
    try:
        sock.sendall(request)
        while sent < total and reader.is_alive():
            sock.sendall(framed)
            sent += len(block)
        if reader.is_alive():
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused while sending: the answer is still there to read
    reader.join(60)
    sock.close()
    time.sleep(0.5)
    sampler.stop()
    # The peak sampled every 0.1 s, and the high-water mark's rise (what no sample can miss).
    growth = max(sampler.peak["gateway"] - before,
                 RssSampler.status_mib(gateway_pid, "VmHWM") - max(hwm_before, before))
    status, body = answer.get("status"), answer.get("body", b"")
    parsed = json.loads(body) if body.startswith(b"{") else {}
    healthy = api.request("GET", "/").status == 200
    early = answer.get("sent", total) < total
    held = (isinstance(status, int) and 400 <= status < 500 and "error" in parsed and early
            and growth <= 16 and healthy)
    return held, (f"{status} {parsed.get('error', answer.get('error', ''))} after "
                  f"{answer.get('sent', 0) / 1e6:.1f} MB sent of {total / 1e6:.0f} MB "
                  f"({answer.get('elapsed', 0):.2f}s); gateway RSS {before:.0f} MiB, "
                  f"peak growth {growth:.1f} MiB (sampled / VmHWM); GET / after: {'200' if healthy else 'FAIL'}")


def oversized_headers(port):
    def raw(request):
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        try:
            sock.sendall(request)
            status, _ = read_http_response(sock)
        except (ConnectionResetError, BrokenPipeError):
            status = "reset"
        finally:
            sock.close()
        return status

    cases = {
        "one 1 MiB header": b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n",
        "500 headers": b"GET /jobs HTTP/1.1\r\nHost: x\r\n" + b"".join(
            f"X-H{i}: v\r\n".encode() for i in range(500)) + b"\r\n",
        "200 KiB URL": b"GET /jobs/" + b"a" * (200 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "64 KiB bearer token": b"GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"A" * 65536 + b"\r\n\r\n",
    }
    results, held = [], True
    for name, request in cases.items():
        status = raw(request)
        ok = isinstance(status, int) and 400 <= status < 500
        held &= ok
        results.append(f"{name}: {status}")
    healthy = Api(port).request("GET", "/").status == 200
    return held and healthy, "; ".join(results) + f"; GET / after: {'200' if healthy else 'FAIL'}"


# --------------------------------------------------------------------------------------------
# Security helpers.


def bola(api, observer, alice, bob, short):
    response = alice.upload("mine.mp4", short)
    if response.status != 202:
        return False, f"upload {response.summary()}"
    job_id = response.json()["job_id"]
    video_id = response.json()["video_file_id"]
    states = wait_jobs({job_id: alice}, 120)
    state = states.get(job_id, {})
    if state.get("status") != "succeeded":
        return False, f"alice's job {state.get('status')}"
    mp3_id = state["mp3_file_id"]
    checks = {
        "status": ("GET", f"/jobs/{job_id}"),
        "events (SSE)": ("GET", f"/jobs/{job_id}/events"),
        "mp3": ("GET", f"/jobs/{job_id}/mp3"),
        "download mp3 by fid": ("GET", f"/download?fid={mp3_id}"),
        "download video by fid": ("GET", f"/download?fid={video_id}"),
        "range download": ("GET", f"/download?fid={mp3_id}"),
        "delete": ("DELETE", f"/jobs/{job_id}"),
    }
    results, held = [], True
    for name, (method, path) in checks.items():
        headers = {"Range": "bytes=0-99"} if name == "range download" else {}
        as_bob = api.authed(method, path, bob.token, headers=headers, timeout=10)
        anonymous = api.request(method, path, timeout=10)
        ok = as_bob.status == 404 and anonymous.status == 401
        held &= ok
        if not ok:
            results.append(f"{name}: bob {as_bob.status}, anonymous {anonymous.status}")
    listing = api.authed("GET", "/jobs", bob.token).json() or {}
    if any(job.get("job_id") == job_id for job in listing.get("jobs", [])):
        held = False
        results.append("bob's /jobs lists alice's job")
    mp3 = api.authed("GET", f"/jobs/{job_id}/mp3", alice.token)
    still = alice.job(job_id) or {}
    owner_ok = mp3.status == 200 and len(mp3.body) > 1000 and still.get("status") == "succeeded"
    held &= owner_ok
    deleted = api.authed("DELETE", f"/jobs/{job_id}", alice.token)
    gone = api.authed("GET", f"/jobs/{job_id}/mp3", alice.token)
    leftovers = observer.mp3_count(job_id)
    held &= deleted.status == 204 and gone.status == 404 and leftovers == 0
    return held, (f"7 routes × (bob → 404, anonymous → 401): {'ok' if not results else '; '.join(results)}; "
                  f"bob's list clean; alice still downloads ({mp3.status}, {len(mp3.body)} B); "
                  f"alice deletes → {deleted.status}, then mp3 → {gone.status}, MP3s left {leftovers}")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ed25519_sign(key_path, message):
    # openssl signs Ed25519 in one shot and so wants a file, not a pipe.
    path = WORK / "run" / f"to-sign-{uuid.uuid4().hex}.bin"
    path.write_bytes(message)
    try:
        result = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", str(key_path), "-rawin",
                                 "-in", str(path)], capture_output=True, check=True)
    finally:
        path.unlink(missing_ok=True)
    return result.stdout


def jwt_attacks(api, stack, alice, bob):
    header = json.loads(b64url_decode(alice.token.split(".")[0]))
    claims = json.loads(b64url_decode(alice.token.split(".")[1]))
    key = stack.signing_key
    public_pem = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True,
                                check=True).stdout
    other_key = WORK / "run" / "other-key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(other_key)], check=True,
                   capture_output=True)

    def token(hdr, payload, signer):
        signing_input = f"{b64url(json.dumps(hdr).encode())}.{b64url(json.dumps(payload).encode())}"
        return f"{signing_input}.{signer(signing_input.encode())}"

    def ed(key_path):
        return lambda message: b64url(ed25519_sign(key_path, message))

    now = int(time.time())

    def attempt(forged, expect):
        def body():
            response = api.authed("GET", "/jobs", forged, timeout=10)
            return response.status == expect, response.summary()
        return body

    tampered_payload = dict(claims, sub=bob.id, email=bob.email)
    original_signature = alice.token.split(".")[2]
    tampered = (f"{alice.token.split('.')[0]}.{b64url(json.dumps(tampered_payload).encode())}."
                f"{original_signature}")
    hs_header = dict(header, alg="HS256")
    return [
        ("control: correctly re-signed claims", "200 (proves the forgeries below are well-formed)",
         attempt(token(header, claims, ed(key)), 200)),
        ("alg none", "401", attempt(token(dict(header, alg="none"), claims, lambda m: ""), 401)),
        ("algorithm confusion (HS256 keyed with the public key PEM)", "401",
         attempt(token(hs_header, claims, lambda m: b64url(hmac.new(public_pem, m, hashlib.sha256).digest())), 401)),
        ("expired (validly signed)", "401",
         attempt(token(header, dict(claims, iat=now - 7200, exp=now - 3600), ed(key)), 401)),
        ("wrong audience (validly signed)", "401",
         attempt(token(header, dict(claims, aud="some-other-service"), ed(key)), 401)),
        ("wrong issuer (validly signed)", "401",
         attempt(token(header, dict(claims, iss="https://evil.example"), ed(key)), 401)),
        ("tampered payload (sub → another user, original signature)", "401", attempt(tampered, 401)),
        ("signed by another key with the same kid", "401", attempt(token(header, claims, ed(other_key)), 401)),
        ("unknown kid", "401", attempt(token(dict(header, kid="rotated-" + uuid.uuid4().hex[:6]), claims,
                                             ed(other_key)), 401)),
    ]


def sql_injection(api, mariadb, alice):
    users_before = int(mariadb.sql("SELECT COUNT(*) FROM mp3rel.users").strip())
    results, held = [], True
    five_hundreds = []

    def note(name, response, allowed):
        nonlocal held
        ok = response.status in allowed
        if response.status >= 500:
            five_hundreds.append(name)
        held &= ok
        results.append(f"{name}: {response.status}")

    for email, password in [
        ("' OR '1'='1' -- ", "' OR 'p'='p' -- pw"),
        ("admin'-- @example.com", "x"),
        (alice.email, "' OR '1'='1"),
        (alice.email + "' -- ", "anything"),
        ('" OR ""="', '" OR "pw"="pw'),
        (alice.email + "'; DROP TABLE users; -- ", "x"),
    ]:
        note(f"login {email[:24]!r}", login(api, email, password), {401, 422, 400})
    for email in ["x' OR '1'='1@example.com", "a@b.c'); DROP TABLE users; --"]:
        response = api.request("POST", "/signup", json.dumps({"email": email, "password": "long-enough-pass-1"}),
                               {"Content-Type": "application/json"})
        note(f"signup {email[:24]!r}", response, {201, 400, 409, 422})
    quoted = f"o'brien+{uuid.uuid4().hex[:6]}@example.com"
    password = "quote-'-" + secrets.token_hex(6)
    created = api.request("POST", "/signup", json.dumps({"email": quoted, "password": password}),
                          {"Content-Type": "application/json"})
    logged = login(api, quoted, password)
    quote_ok = created.status == 201 and logged.status == 200
    held &= quote_ok
    results.append(f"quoted email signup/login: {created.status}/{logged.status}")
    for path in ["/jobs/1'%20OR%20'1'='1", "/jobs?before=1'%20OR%201=1", "/jobs?limit=1;DROP%20TABLE%20users",
                 "/download?fid=%7B%22%24ne%22%3Anull%7D", "/download?fid[$ne]=x",
                 "/jobs/%7B%22%24gt%22%3A%22%22%7D/mp3"]:
        note(f"GET {path[:28]}", api.authed("GET", path, alice.token), {400, 404, 422})
    users_after = int(mariadb.sql("SELECT COUNT(*) FROM mp3rel.users").strip())
    alice_ok = login(api, alice.email, alice.password).status == 200
    held &= alice_ok and not five_hundreds
    return held, (f"{len(results)} probes, 5xx: {five_hundreds or 'none'}; "
                  f"quoted email works: {quote_ok}; users {users_before}->{users_after}; "
                  f"alice logs in: {alice_ok}; " + ", ".join(r for r in results if not r.endswith(("401", "400", "404", "422")))[:300])


def rate_limit(api, alice):
    target = User(api, "victim")
    statuses = [login(api, target.email, f"wrong-{i}-password").status
                for i in range(LOGIN_MAX_FAILURES_PER_EMAIL)]
    blocked_wrong = login(api, target.email, "wrong-again-password")
    blocked_right = login(api, target.email, target.password)
    retry_after = blocked_right.headers.get("retry-after")
    other_user = login(api, alice.email, alice.password).status
    per_email = (statuses == [401] * LOGIN_MAX_FAILURES_PER_EMAIL and blocked_wrong.status == 429
                 and blocked_right.status == 429 and blocked_right.is_json_error()
                 and retry_after is not None and other_user == 200)
    time.sleep(LOGIN_WINDOW_SECONDS + 1)
    lifted = login(api, target.email, target.password).status
    # Per client address (every request here comes from 127.0.0.1).
    failures = [login(api, f"nobody-{i}-{uuid.uuid4().hex[:6]}@example.com", "wrong-password-x").status
                for i in range(LOGIN_MAX_FAILURES_PER_ADDRESS)]
    address_blocked = login(api, alice.email, alice.password)
    time.sleep(LOGIN_WINDOW_SECONDS + 1)
    address_lifted = login(api, alice.email, alice.password).status
    per_address = (all(s == 401 for s in failures) and address_blocked.status == 429
                   and address_lifted == 200)
    held = per_email and lifted == 200 and per_address
    return held, (f"per email: {LOGIN_MAX_FAILURES_PER_EMAIL}×{set(statuses)}, then wrong→{blocked_wrong.status}, "
                  f"right→{blocked_right.status} (Retry-After {retry_after}), other user→{other_user}, "
                  f"after {LOGIN_WINDOW_SECONDS}s→{lifted}; per address: {LOGIN_MAX_FAILURES_PER_ADDRESS} "
                  f"failures→{sorted(set(failures))}, then valid login→{address_blocked.status}, "
                  f"after window→{address_lifted}")


def gateway_limits(suite):
    """Restarts the gateway with low limits, probes each, and restarts it as it was."""
    stack, api = suite.stack, suite.api
    results = []
    users = [User(api, f"limits{i}") for i in range(2)]  # before the restart: no limit yet
    stack.sh("restart-service", "gateway", extra_env=GATEWAY_LIMITS_TESTED)
    try:
        stack.wait_ready(["gateway"], 60)
        logins = [login(api, users[0].email, users[0].password) for _ in range(6)]
        statuses = [r.status for r in logins]
        last = logins[-1]
        logins_ok = statuses == [200] * 5 + [429] and last.is_json_error() and "retry-after" in last.headers
        results.append(f"logins {statuses} (Retry-After {last.headers.get('retry-after')})")

        # One upload held open half-sent; a second one of the same user meanwhile is refused.
        short = suite.media["short"]
        body, ctype = multipart([("file", "slow.mp4", "video/mp4", short)])
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=30)
        sock.sendall((f"POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {users[1].token}\r\n"
                      f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                     + body[: len(body) // 2])
        time.sleep(1)
        concurrent_refused = users[1].upload("second.mp4", short)
        sock.sendall(body[len(body) // 2:])
        first_status, _ = read_http_response(sock)
        sock.close()
        concurrency_ok = concurrent_refused.status == 429 and first_status == 202
        results.append(f"second upload while one is in progress → {concurrent_refused.status}, "
                       f"the first → {first_status}")

        per_minute = [users[1].upload(f"n{i}.mp4", short).status for i in range(3)]
        per_minute_ok = per_minute.count(202) == 2 and per_minute[-1] == 429
        results.append(f"uploads/min (3, one used): {per_minute}")
    finally:
        stack.sh("restart-service", "gateway")
        stack.wait_ready(["gateway"], 60)
    return logins_ok and concurrency_ok and per_minute_ok, "; ".join(results)


DASHBOARD_BACKENDS = ("mailhog", "rabbitmq-management")


def internal_endpoints(stack):
    public, admin = Api(stack.ports["gateway"]), Api(stack.ports["gateway_admin"])
    seen = {}
    for path in ("/metrics", "/readyz", "/healthz"):
        seen[f"public {path}"] = public.request("GET", path).status
        seen[f"admin {path}"] = admin.request("GET", path).status
    held = all(status == 404 for what, status in seen.items() if what.startswith("public")) and \
        all(status == 200 for what, status in seen.items() if what.startswith("admin"))
    return held, ", ".join(f"{what} {status}" for what, status in seen.items())


def k8s_exposure():
    documents = []
    for path in sorted((ROOT / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                documents.append((path.name, doc))
    problems, services, ingress_backends = [], [], set()
    for name, doc in documents:
        kind, meta, spec = doc.get("kind"), doc.get("metadata", {}), doc.get("spec") or {}
        if kind == "Service":
            services.append(meta.get("name"))
            kind_of = spec.get("type", "ClusterIP")
            if kind_of != "ClusterIP":
                problems.append(f"Service {meta.get('name')} is {kind_of}")
            if spec.get("externalIPs"):
                problems.append(f"Service {meta.get('name')} has externalIPs")
            if any("nodePort" in p for p in spec.get("ports", [])):
                problems.append(f"Service {meta.get('name')} sets a nodePort")
        if kind == "Ingress":
            backends = []
            default = (spec.get("defaultBackend") or {}).get("service", {}).get("name")
            if default:
                backends.append(default)
            for rule in spec.get("rules", []):
                for p in (rule.get("http") or {}).get("paths", []):
                    backends.append(p.get("backend", {}).get("service", {}).get("name"))
            ingress_backends.update(backends)
            # The operators' dashboards Ingress (MailHog, RabbitMQ management UI) is asked for by the
            # deployment issue; no API, datastore port or internal service may be routed.
            others = sorted(set(b for b in backends if b not in ("gateway", *DASHBOARD_BACKENDS)))
            if others:
                problems.append(f"Ingress {meta.get('name')} ({name}) routes to {', '.join(others)}")
        template = (spec.get("template") or {}).get("spec") or (
            ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        if template.get("hostNetwork"):
            problems.append(f"{kind} {meta.get('name')} uses hostNetwork")
        for container in template.get("containers", []) + template.get("initContainers", []):
            if any("hostPort" in p for p in container.get("ports", [])):
                problems.append(f"{kind} {meta.get('name')} container {container.get('name')} has a hostPort")
    if "gateway" not in ingress_backends:
        problems.append("no Ingress routes to the gateway")
    return not problems, (f"{len(documents)} documents, {len(services)} Services; "
                          + ("; ".join(problems) if problems
                             else "only the gateway (and the operators' dashboards Ingress) is reachable from outside"))


# --------------------------------------------------------------------------------------------
# Load.


def load(suite, clients, per_client):
    api, observer, short = suite.api, suite.observer, suite.media["short"]
    users = [User(api, f"load{i}") for i in range(clients)]
    pids = {"gateway": suite.stack.pid("gateway"), "converter": suite.stack.pid("converter")}
    sampler = RssSampler(pids)
    upload_times, submitted, errors = [], {}, []
    lock = threading.Lock()

    def client(user):
        for i in range(per_client):
            start = time.monotonic()
            try:
                response = user.upload(f"clip-{i}.mp4", short)
            except OSError as e:
                with lock:
                    errors.append(f"upload: {e}")
                continue
            elapsed = time.monotonic() - start
            with lock:
                if response.status == 202:
                    upload_times.append(elapsed)
                    submitted[response.json()["job_id"]] = (user, time.monotonic())
                else:
                    errors.append(f"upload {response.summary()}")

    wall_start = time.monotonic()
    ready_at = {}
    stop_polling = threading.Event()

    def poller():
        while not stop_polling.is_set() or len(ready_at) < len(submitted):
            with lock:
                pending = [(j, u) for j, (u, _) in submitted.items() if j not in ready_at]
            for job_id, user in pending:
                try:
                    state = user.job(job_id)
                except OSError:
                    continue
                if state and state["status"] in ("succeeded", "failed"):
                    ready_at[job_id] = (time.monotonic(), state["status"])
            if stop_polling.is_set() and time.monotonic() - wall_start > 600:
                break
            time.sleep(0.05)

    poll_thread = threading.Thread(target=poller, daemon=True)
    poll_thread.start()
    with futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, users))
    stop_polling.set()
    poll_thread.join(600)
    wall = max((t for t, _ in ready_at.values()), default=time.monotonic()) - wall_start
    sampler.stop()
    hwm = {name: RssSampler.status_mib(pid, "VmHWM") for name, pid in pids.items()}
    ready = [ready_at[j][0] - t for j, (_, t) in submitted.items() if j in ready_at]
    failed = [j for j, (_, status) in ready_at.items() if status != "succeeded"]
    problems, _ = audit_jobs(observer, {j: u for j, (u, _) in submitted.items()}, 60)
    total = clients * per_client
    errors += problems
    megabytes = len(short) * len(submitted) / 1e6
    suite.metrics = [
        ("jobs", f"{len(submitted)}/{total} accepted, {len(ready_at) - len(failed)} converted"),
        ("wall time (first upload → last MP3)", f"{wall:.1f} s"),
        ("throughput", f"{len(ready) / wall * 60:.1f} jobs/min, {megabytes / wall:.2f} MB/s uploaded"),
        ("upload p50 / p95 / p99", " / ".join(f"{percentile(upload_times, p) * 1000:.0f} ms" for p in (50, 95, 99))),
        ("upload → MP3 ready p50 / p95 / p99", " / ".join(f"{percentile(ready, p):.2f} s" for p in (50, 95, 99))),
        ("errors", str(len(errors))),
        ("peak RSS gateway (sampled / VmHWM)", f"{sampler.peak['gateway']:.0f} / {hwm['gateway']:.0f} MiB"),
        ("peak RSS converter (sampled / VmHWM)", f"{sampler.peak['converter']:.0f} / {hwm['converter']:.0f} MiB"),
    ]
    held = not errors and len(submitted) == total and not failed
    return held, (f"{len(submitted)}/{total} jobs in {wall:.1f}s ({len(ready) / max(wall, 0.001) * 60:.0f}/min); "
                  f"upload p50 {percentile(upload_times, 50) * 1000:.0f} ms p99 {percentile(upload_times, 99) * 1000:.0f} ms; "
                  f"ready p50 {percentile(ready, 50):.2f}s p95 {percentile(ready, 95):.2f}s p99 {percentile(ready, 99):.2f}s; "
                  f"errors {len(errors)}" + (f" ({'; '.join(errors[:3])})" if errors else "")
                  + f"; peak RSS gateway {sampler.peak['gateway']:.0f} MiB, converter {sampler.peak['converter']:.0f} MiB")


# --------------------------------------------------------------------------------------------
# Faults.


def kill_converter(suite):
    stack, api = suite.stack, suite.api
    user = User(api, "kill")
    long_job = user.upload("long.mp4", suite.media["long"], timeout=300)
    if long_job.status != 202:
        return False, f"upload {long_job.summary()}"
    jobs = {long_job.json()["job_id"]: user}
    for i in range(2):
        response = user.upload(f"short-{i}.mp4", suite.media["short"])
        if response.status == 202:
            jobs[response.json()["job_id"]] = user
    long_id = long_job.json()["job_id"]

    def converting():
        state = user.job(long_id) or {}
        if state.get("status") in ("succeeded", "failed"):
            raise RuntimeError("finished before the kill")
        return state.get("status") == "converting" and state.get("progress", 0) >= 5

    try:
        wait_until(converting, 240, interval=0.1, what="the long job converting")
    except RuntimeError as e:
        return False, f"long job {e}: use a longer video (--long-minutes)"
    progress_at_kill = (user.job(long_id) or {}).get("progress")
    pid = stack.pid("converter")
    stack.sh("kill-service", "converter")
    time.sleep(0.5)
    killed = not pid_alive(pid)
    time.sleep(2)
    stack.sh("start-service", "converter")
    stack.wait_ready(["converter"], 120)
    problems, states = audit_jobs(suite.observer, jobs, 600)
    attempts = states.get(long_id, {}).get("attempts")
    held = killed and not problems
    return held, (f"killed at {progress_at_kill}% (pid gone: {killed}); long job attempts {attempts}; "
                  f"{len(jobs)} jobs: " + ("all converted, 1 MP3 + 1 mail each" if not problems
                                           else "; ".join(problems[:4])))


def poison_delivery(suite):
    """A job the converter dies on every time (as an out-of-memory kill would): the suite kills it
    whenever it converts that job. The broker counts the deaths (quorum queue delivery limit) and
    gives the job up after DELIVERY_LIMIT + 1; the converter then fails it with the reason."""
    stack, api, observer = suite.stack, suite.api, suite.observer
    user = User(api, "poison")
    poison = user.upload("poison.mp4", suite.media["long"], timeout=300)
    if poison.status != 202:
        return False, f"upload {poison.summary()}"
    poison_id = poison.json()["job_id"]
    others = {}
    for i in range(2):
        response = user.upload(f"healthy-{i}.mp4", suite.media["short"])
        if response.status == 202:
            others[response.json()["job_id"]] = user
    kills, deadline = 0, time.monotonic() + 600
    while time.monotonic() < deadline:
        state = user.job(poison_id) or {}
        if state.get("status") in ("succeeded", "failed"):
            break
        if state.get("status") == "converting" and observer.started_count(poison_id) > kills:
            stack.sh("kill-service", "converter")
            kills += 1
            time.sleep(0.5)
            stack.sh("start-service", "converter")
            stack.wait_ready(["converter"], 120)
        time.sleep(0.2)
    state = user.job(poison_id) or {}
    reason = state.get("failure_reason") or ""
    problems, _ = audit_jobs(observer, others, 600)
    try:
        wait_until(lambda: observer.mail_count(poison_id) >= 1, 60, interval=0.5, what="the failure mail")
    except TimeoutError:
        pass
    time.sleep(3)
    mails = observer.mail_count(poison_id)
    held = (state.get("status") == "failed" and "could not be processed" in reason
            and kills == DELIVERY_LIMIT + 1 and mails == 1 and not problems)
    return held, (f"killed {kills}× (limit {DELIVERY_LIMIT}); poisoned job {state.get('status')}: {reason!r}, "
                  f"{mails} mail(s); {len(others)} other jobs: "
                  + ("converted, 1 MP3 + 1 mail each" if not problems else "; ".join(problems[:4])))


def duplicate_delivery(suite):
    """What an unconfirmed publish retried by the outbox produces: two copies of one event. The
    converter is stopped so that both copies wait in its queue and arrive together."""
    stack, rabbit, observer = suite.stack, suite.rabbit, suite.observer
    user = User(suite.api, "dup")
    stack.sh("stop-service", "converter")
    try:
        response = user.upload("twice.mp4", suite.media["short"])
        if response.status != 202:
            return False, f"upload {response.summary()}"
        job_id = response.json()["job_id"]
        wait_until(lambda: observer.queue(CONVERTER_QUEUE) == 1, 30, what="the job in the converter queue")
        stored = observer.mongo["jobs"]["events"].find_one({"job_id": job_id, "event_type": "job.submitted"})
        client = Amqp(rabbit.port, rabbit.user, rabbit.password)
        try:
            client.publish("jobs.events", "job.submitted", stored["envelope"].encode(), stored["_id"])
            deadline = time.monotonic() + 10
            while (queued := client.message_count(CONVERTER_QUEUE)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            client.close()
    finally:
        stack.sh("start-service", "converter")
    stack.wait_ready(["converter"], 60)
    problems, states = audit_jobs(observer, {job_id: user}, 120)
    conversions = sum(1 for line in (stack.dir / "logs" / "converter.log").read_text(errors="replace").splitlines()
                      if job_id in line and '"converted"' in line)
    return not problems, (f"{queued} copies queued; converted {conversions}×; "
                          + ("1 MP3 + 1 mail" if not problems else "; ".join(problems)))


def rabbit_outage(suite):
    stack, api, rabbit = suite.stack, suite.api, suite.rabbit
    user = User(api, "rabbit")
    watch = ReadyWatch(stack, ["gateway", "converter", "notification"])
    statuses, jobs = [], {}
    stopped = threading.Event()
    window = {}

    def stopper():
        window["start"] = time.monotonic()
        rabbit.stop()
        window["stopped"] = time.monotonic()
        stopped.set()

    stopper_thread = None
    for i in range(20):
        if i == 5:
            stopper_thread = threading.Thread(target=stopper, daemon=True)
            stopper_thread.start()
        try:
            response = user.upload(f"r{i}.mp4", suite.media["short"], timeout=60)
            statuses.append(response.status)
            if response.status == 202:
                jobs[response.json()["job_id"]] = user
        except OSError as e:
            statuses.append(str(e)[:30])
        time.sleep(0.5)
    stopped.wait(180)
    time.sleep(5)  # the outage lasts a little beyond the uploads
    during_end = time.monotonic()
    rabbit.start()
    restarted = time.monotonic()
    stack.wait_ready(["gateway", "converter", "notification"], 180)
    watch.stop()
    unready = {name: watch.unready_between(name, window.get("stopped", 0), during_end)
               for name in watch.seen}
    problems, _ = audit_jobs(suite.observer, jobs, 600)
    held = all(unready.values()) and not problems and len(jobs) > 0
    counts = {s: statuses.count(s) for s in set(statuses)}
    return held, (f"uploads {counts}; /readyz 503 during the outage: {unready}; back after "
                  f"{restarted - during_end:.0f}s start; {len(jobs)} accepted: "
                  + ("all converted, 1 MP3 + 1 mail each" if not problems else "; ".join(problems[:4])))


class Traffic:
    """Background requests: uploads (and optionally logins/signups), each outcome timestamped."""

    def __init__(self, suite, user, logins=False, interval=0.4):
        self.suite, self.user, self.logins, self.interval = suite, user, logins, interval
        self.outcomes = []  # (time, kind, status)
        self.jobs = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _note(self, kind, fn):
        started = time.monotonic()  # a request counts for the moment it was sent
        try:
            response = fn()
            status = response.status
        except OSError as e:
            response, status = None, f"error {type(e).__name__}"
        self.outcomes.append((started, kind, status))
        return response

    def _run(self):
        i = 0
        while not self.stop_event.is_set():
            i += 1
            response = self._note("upload", lambda: self.user.upload(f"t{i}.mp4", self.suite.media["short"], timeout=30))
            if response is not None and response.status == 202:
                self.jobs[response.json()["job_id"]] = self.user
            self._note("list", lambda: self.suite.api.authed("GET", "/jobs?limit=5", self.user.token, timeout=30))
            if self.logins:
                self._note("login", lambda: login(self.suite.api, self.user.email, self.user.password))
            time.sleep(self.interval)

    def stop(self):
        self.stop_event.set()
        self.thread.join(120)

    def statuses(self, start, end, kinds=None):
        found = {}
        for t, kind, status in self.outcomes:
            if start <= t <= end and (kinds is None or kind in kinds):
                found.setdefault(kind, {}).setdefault(status, 0)
                found[kind][status] += 1
        return found


def mongo_outage(suite):
    stack = suite.stack
    user = User(suite.api, "mongo")
    watch = ReadyWatch(stack, ["gateway", "converter", "notification"])
    traffic = Traffic(suite, user)
    time.sleep(3)
    down = time.monotonic()
    stack.sh("stop-service", "secantusdb")
    time.sleep(6)
    stack.sh("start-service", "secantusdb")
    up = time.monotonic()
    stack.wait_ready(["gateway", "converter", "notification"], 180)
    recovered = time.monotonic()
    time.sleep(5)
    traffic.stop()
    watch.stop()
    during = traffic.statuses(down, up)
    after = traffic.statuses(recovered + 1, time.monotonic())
    unready = {name: watch.unready_between(name, down, up) for name in watch.seen}
    bad_during = [s for kind in during.values() for s in kind if s not in (200, 202, 503)]
    bad_after = [s for kind in after.values() for s in kind if s not in (200, 202)]
    problems, _ = audit_jobs(suite.observer, traffic.jobs, 600)
    held = all(unready.values()) and not bad_during and not bad_after and not problems
    return held, (f"during: {during}; /readyz 503: {unready}; ready again {recovered - up:.1f}s after "
                  f"restart; after: {after}; {len(traffic.jobs)} accepted: "
                  + ("all converted, 1 MP3 + 1 mail each" if not problems else "; ".join(problems[:4])))


def mysql_outage(suite):
    stack, mariadb = suite.stack, suite.mariadb
    user = User(suite.api, "mysql")
    watch = ReadyWatch(stack, ["auth"])
    traffic = Traffic(suite, user, logins=True)
    time.sleep(3)
    down = time.monotonic()
    mariadb.stop()
    time.sleep(6)
    mariadb.start()
    up = time.monotonic()
    stack.wait_ready(["auth"], 120)
    try:
        wait_until(lambda: login(suite.api, user.email, user.password).status == 200, 60,
                   what="a login after the restart")
    except TimeoutError:
        pass
    recovered = time.monotonic()
    time.sleep(5)
    traffic.stop()
    watch.stop()
    during = traffic.statuses(down, up)
    after = traffic.statuses(recovered, time.monotonic())
    unready = watch.unready_between("auth", down, up)
    bad_during = [s for kind in during.values() for s in kind if s not in (200, 202, 503)]
    bad_after = [s for kind in after.values() for s in kind if s not in (200, 202)]
    new_user_ok = True
    try:
        User(suite.api, "after-mysql")
    except RuntimeError:
        new_user_ok = False
    problems, _ = audit_jobs(suite.observer, traffic.jobs, 600)
    held = unready and not bad_during and not bad_after and new_user_ok and not problems
    return held, (f"during: {during}; auth /readyz 503: {unready}; logins OK {recovered - up:.1f}s after "
                  f"restart; after: {after}; signup after: {new_user_ok}; uploads "
                  + ("all converted" if not problems else "; ".join(problems[:4])))


def smtp_outage(suite):
    stack, observer = suite.stack, suite.observer
    user = User(suite.api, "smtp")
    stack.sh("stop-service", "smtp")
    down = time.monotonic()
    jobs = {}
    for i in range(3):
        response = user.upload(f"m{i}.mp4", suite.media["short"])
        if response.status == 202:
            jobs[response.json()["job_id"]] = user
    states = wait_jobs(jobs, 120)
    converted = all(s.get("status") == "succeeded" for s in states.values()) and len(states) == 3
    remaining = 12 - (time.monotonic() - down)
    if remaining > 0:
        time.sleep(remaining)
    mails_during = sum(observer.mail_count(j) for j in jobs)
    stack.sh("start-service", "smtp")
    up = time.monotonic()
    problems, states = audit_jobs(observer, jobs, 120)
    delivered = time.monotonic() - up
    notified = [((user.job(j) or {}).get("notification") or {}).get("status") for j in jobs]
    held = converted and mails_during == 0 and not problems
    return held, (f"down {up - down:.0f}s; converted while down: {converted}; mails while down "
                  f"{mails_during}; after return: " + ("1 mail per job" if not problems else "; ".join(problems[:4]))
                  + f" (within {delivered:.0f}s); notification states {notified}")


# --------------------------------------------------------------------------------------------


def render(rows, metrics, args, started):
    lines = ["| scenario | expectation | result | held |", "|---|---|---|---|"]
    for scenario, expectation, result, held in rows:
        cell = result.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {scenario} | {expectation} | {cell} | {'yes' if held else '**NO**'} |")
    out = [f"Reliability suite, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, "
           f"{'quick' if args.quick else 'full'} run of {', '.join(args.sections)} "
           f"({args.profile} binaries, {os.cpu_count()} cores), "
           f"{time.time() - started:.0f} s: {sum(1 for r in rows if r[3])}/{len(rows)} held.", ""]
    out += lines
    if metrics:
        out += ["", f"Load ({args.clients} clients × {args.videos} videos of 2 s, on loopback):", "",
                "| metric | value |", "|---|---|"]
        out += [f"| {name} | {value} |" for name, value in metrics]
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", help="badinput security load faults fuzz memory")
    parser.add_argument("--quick", action="store_true", help="badinput, security and a small load (< 3 min)")
    parser.add_argument("--profile", choices=("release", "debug"), default="release")
    parser.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    parser.add_argument("--clients", type=int, help="load: concurrent clients (quick 4, full 16)")
    parser.add_argument("--videos", type=int, help="load: videos per client (quick 3, full 8)")
    parser.add_argument("--long-minutes", type=int, default=40,
                        help="length of the video the converter is killed in (minutes)")
    parser.add_argument("--fuzz-seconds", type=int, default=300)
    args = parser.parse_args()
    known = ["badinput", "security", "load", "faults", "fuzz", "memory"]
    if not args.sections:
        args.sections = ["badinput", "security", "load"] if args.quick else known
    unknown = [s for s in args.sections if s not in known]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {known}")
    args.clients = args.clients or (4 if args.quick else 16)
    args.videos = args.videos or (3 if args.quick else 8)

    started = time.time()
    suite = Suite(args)
    needs_stack = any(s not in ("fuzz", "memory") for s in args.sections)
    try:
        if needs_stack:
            suite.setup()
        for section in known:  # a fixed order: the faults come after the quieter sections
            if section in args.sections:
                log(f"=== section {section}")
                getattr(suite, f"section_{section}")()
        if needs_stack:
            if "security" in args.sections:
                suite.secrets_in_logs()
            suite.final_checks()
    except Exception as e:  # noqa: BLE001 - the set-up failed: report it as a row
        traceback.print_exc()
        suite.record("set-up", "the stack starts on private services", False, f"{type(e).__name__}: {e}")
    finally:
        suite.teardown()
    report = render(suite.rows, suite.metrics, args, started)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results.md").write_text(report)
    print(report)
    sys.exit(0 if suite.rows and all(r[3] for r in suite.rows) else 1)


if __name__ == "__main__":
    main()
