"""The live engine's own process: ``python -m studio.live_worker BUNDLE_DIR [--controls JSON] [--seed N]``.

One per listening page, started by the server (``studio.live.LiveProcess``). It runs the device's ``Engine`` into
a real-time paced ``StreamSink`` and writes ``FRAME``s to stdout: a JSON hello (or error) first, then one AUDIO
frame per block and a JSON stats frame each second. Each stdin line is a knob message (one with an ``"id"`` is answered
with ``{"applied": {"id", "seq"}}``, the first block made with it); end of stdin (the page left, or the server is
gone) fades out and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from .errors import StudioError
from .live import AUDIO, FRAME, JSON, LiveSession, check_control_message, message_id

STATS_EVERY_S = 1.0


class FrameWriter:
    """Frames to a pipe from several threads (the pacing thread's audio, the stats thread, the knob loop)."""

    def __init__(self, fd: int):
        self._out = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()
        self.closed = False

    def send(self, kind: int, payload: bytes) -> None:
        if self.closed:
            return
        with self._lock:
            try:
                self._out.write(FRAME.pack(kind, len(payload)) + payload)
            except (BrokenPipeError, ValueError, OSError):  # the server is gone: stdin's end stops us
                self.closed = True

    def send_json(self, message: dict) -> None:
        self.send(JSON, json.dumps(message).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.live_worker", description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--controls", default="{}", help="initial knob values, a JSON object")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    writer = FrameWriter(os.dup(1))
    os.dup2(2, 1)  # a stray print goes to stderr, never into the frame stream
    try:
        controls, _ = check_control_message({"set": json.loads(args.controls)})
        session = LiveSession(args.bundle, lambda message: writer.send(AUDIO, message), controls=controls,
                              seed=args.seed)
    except (StudioError, ValueError) as exc:
        writer.send_json({"error": str(exc)})
        return 1
    except Exception as exc:  # a bundle that does not load: say which and why, in the page
        writer.send_json({"error": f"{args.bundle}: {exc}"})
        return 1
    writer.send_json({"hello": {"sample_rate_hz": session.sample_rate_hz, "block_frames": session.block_frames,
                                "bundle_id": session.bundle.bundle_id}})
    session.start()
    done = threading.Event()

    def report() -> None:
        while not done.wait(STATS_EVERY_S):
            writer.send_json({"stats": session.stats()})

    threading.Thread(target=report, name="studio-stats", daemon=True).start()
    try:
        for line in sys.stdin.buffer:
            try:
                message = json.loads(line)
                first_block = session.apply(message)
                turn = message_id(message)
                if turn is not None:  # the page times this turn until that block is heard
                    writer.send_json({"applied": {"id": turn, "seq": first_block}})
            except (StudioError, ValueError) as exc:
                writer.send_json({"error": str(exc)})
    finally:
        done.set()
        session.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
