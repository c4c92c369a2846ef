"""Knob -> sound on every turn: the live session names the first block made with a knob message, and the worker
answers a numbered message with it ("applied"); the page's timing of each turn rests on that number (the browser
test checks it against where the level really falls)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from murmur.studio.errors import StudioError
from murmur.studio.live import AUDIO, FRAME, JSON, LiveSession, message_id
from murmur.studio.training import child_env


def test_a_knob_message_is_applied_from_the_frame_after_the_one_being_made(tiny_bundle):
    session = LiveSession(tiny_bundle, lambda message: None)
    pipeline = session.engine.pipeline
    assert session.apply({"set": {"gain_db": -6}}) == pipeline.frame_index + 1 == 1  # nothing made yet
    pipeline.frame_index = 41  # as if 41 blocks were made: one may be in the making with the old values
    assert session.apply({"set": {"gain_db": -12}, "id": 3}) == 42


@pytest.mark.parametrize("wrong", ["3", 1.5, True, -1, [1], 2**60])
def test_a_turn_number_is_a_whole_number(wrong):
    with pytest.raises(StudioError, match='"id" is a whole number'):
        message_id({"set": {"gain_db": 0}, "id": wrong})
    assert message_id({"set": {}}) is None and message_id({"id": 0}) == 0


def test_the_worker_answers_a_numbered_turn_with_its_first_block(tiny_bundle):
    proc = subprocess.Popen([sys.executable, "-m", "murmur.studio.live_worker", str(tiny_bundle)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
    assert proc.stdin is not None and proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # a worker that never answers ends the reads below, not the suite
    watchdog.start()
    try:
        def frame():
            kind, length = FRAME.unpack(proc.stdout.read(FRAME.size))
            return kind, proc.stdout.read(length)

        kind, payload = frame()
        assert kind == JSON and "hello" in json.loads(payload)
        blocks = 0
        while blocks < 5:  # it plays
            blocks += frame()[0] == AUDIO
        proc.stdin.write(b'{"set": {"gain_db": -30}, "id": 7}\n{"set": {"gain_db": -20}}\n{"id": 8, "trigger": "reseed"}\n')
        proc.stdin.flush()
        applied = []
        while len(applied) < 2:
            kind, payload = frame()
            if kind == JSON and "applied" in (message := json.loads(payload)):
                applied.append(message["applied"])
        assert [a["id"] for a in applied] == [7, 8]  # the message without a number is not answered
        assert blocks <= applied[0]["seq"] <= applied[1]["seq"]
    finally:
        watchdog.cancel()
        proc.stdin.close()
        proc.wait(timeout=30)
