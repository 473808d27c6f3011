#!/usr/bin/python3
"""A MailHog-compatible mail catcher for the deployment rehearsal: SMTP on :1025 (aiosmtpd),
MailHog's HTTP API on :8025 (GET /api/v2/messages, GET/DELETE /api/v1/messages, GET /).
Messages live in memory."""
import asyncio
import email
import email.policy
import json
import os
import signal
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

MESSAGES: list[dict] = []
LOCK = threading.Lock()


def path_of(address: str) -> dict:
    mailbox, _, domain = address.partition("@")
    return {"Relays": None, "Mailbox": mailbox, "Domain": domain, "Params": ""}


class Handler:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        raw = envelope.content.decode("utf-8", errors="replace")
        parsed = email.message_from_string(raw, policy=email.policy.compat32)
        headers: dict[str, list[str]] = {}
        for name, value in parsed.items():
            headers.setdefault(name, []).append(str(value))
        head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
        message = {
            "ID": f"{uuid.uuid4()}@mailhog.example",
            "From": path_of(envelope.mail_from),
            "To": [path_of(to) for to in envelope.rcpt_tos],
            "Content": {"Headers": headers, "Body": body, "Size": len(raw), "MIME": None},
            "Created": datetime.now(timezone.utc).isoformat(),
            "MIME": None,
            "Raw": {"From": envelope.mail_from, "To": list(envelope.rcpt_tos), "Data": raw, "Helo": session.host_name},
        }
        with LOCK:
            MESSAGES.insert(0, message)
        print(f"mail from {envelope.mail_from} to {', '.join(envelope.rcpt_tos)}: "
              f"{parsed.get('Subject', '')}", flush=True)
        return "250 Message accepted for delivery"


class Api(BaseHTTPRequestHandler):
    def send_json(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        with LOCK:
            items = list(MESSAGES)
        if path == "/api/v2/messages":
            self.send_json(200, {"total": len(items), "count": len(items), "start": 0, "items": items})
        elif path == "/api/v1/messages":
            self.send_json(200, items)
        elif path == "/":
            page = f"<!doctype html><title>MailHog stand-in</title><p>{len(items)} message(s); " \
                   "see <a href=/api/v2/messages>/api/v2/messages</a></p>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
        else:
            self.send_json(404, {"error": "not found"})

    def do_DELETE(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] == "/api/v1/messages":
            with LOCK:
                MESSAGES.clear()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_json(404, {"error": "not found"})

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


def main() -> None:
    # PID 1 of its container: SIGTERM has no default action there.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    controller = Controller(Handler(), hostname="0.0.0.0", port=1025)
    controller.start()
    print("SMTP on :1025, HTTP API on :8025 (MailHog stand-in)", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()


if __name__ == "__main__":
    main()
