"""A local SMTP sink for benchmarks: accepts mail on loopback and records, per
message, the arrival time and its Message-ID (one JSON line each).

    python bench/smtp_sink.py --port 2525 --log /tmp/sink.jsonl [--fail-rate 0.3]

``--fail-rate`` answers that share of messages with a 451 (transient) so the
shop's retries are exercised.
"""

import argparse
import json
import random
import signal
import threading
import time

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, path: str, fail_rate: float):
        self.out = open(path, "a", buffering=1)
        self.fail_rate = fail_rate
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.fail_rate and random.random() < self.fail_rate:
            return "451 Try again later (chaos)"
        message_id = ""
        for line in envelope.content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode(errors="replace")
                break
            if not line:
                break
        with self.lock:
            self.out.write(json.dumps({"at": time.time(), "message_id": message_id}) + "\n")
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    args = parser.parse_args()
    controller = Controller(Recorder(args.log, args.fail_rate), hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
