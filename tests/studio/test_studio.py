"""The studio's server, for real: started as `python -m murmur.studio` on a free port, driven over HTTP like the page does.

Security (token, Host, Origin), uploads (decoded before kept, size limit, path traversal), regions, runs and the
deploy tool's summary parsing. The page itself, in a real browser, is tests/studio/test_studio_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from murmur import REPO_ROOT as REPO

requests = pytest.importorskip("requests")
pytest.importorskip("aiohttp")

from murmur.studio.errors import StudioError  # noqa: E402
from murmur.studio.fleet import parse_hosts, parse_summary  # noqa: E402
from murmur.studio.live import StreamSink  # noqa: E402
from murmur.studio.project import Project, safe_name  # noqa: E402
from murmur.studio.training import parse_extra_args  # noqa: E402

ADDRESS = re.compile(r"^studio: (http://127\.0\.0\.1:(\d+)/\?token=(\S+))$")


class StudioProcess:
    """`python -m murmur.studio --port 0 --no-browser` with its printed address parsed."""

    def __init__(self, project: Path, *extra: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "murmur.studio", "--project", str(project), "--port", "0",
                                      "--no-browser", *extra], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.output: list[str] = []
        for line in self.proc.stdout:  # blocks until the server prints its address (or exits)
            self.output.append(line)
            match = ADDRESS.match(line.strip())
            if match:
                self.url, self.port, self.token = match[1], int(match[2]), match[3]
                break
        else:
            raise AssertionError("the studio never printed its address:\n" + "".join(self.output))
        threading.Thread(target=self._drain, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"
        self.project = project

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def get(self, path: str, **kw):
        kw.setdefault("headers", {}).setdefault("X-Studio-Token", self.token)
        return requests.get(self.base + path, timeout=30, **kw)

    def send(self, method: str, path: str, **kw):
        kw.setdefault("headers", {}).setdefault("X-Studio-Token", self.token)
        return requests.request(method, self.base + path, timeout=60, **kw)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    server = StudioProcess(tmp_path_factory.mktemp("studio") / "project")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """4 s of a chord with a little noise, 44.1 kHz, as a WAV."""
    import soundfile

    rate = 44100
    t = np.arange(4 * rate) / rate
    audio = 0.2 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 330 * t)) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    path = tmp_path_factory.mktemp("clip") / "chord.wav"
    soundfile.write(path, audio.astype(np.float32), rate)
    return path


def upload(studio: StudioProcess, filename: str, data: bytes):
    return studio.send("POST", "/api/recordings", files={"file": (filename, data, "application/octet-stream")})


# ---------------------------------------------------------------- names
@pytest.mark.parametrize(("given", "expected"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\take 1.wav", "take_1"), (".hidden.wav", "hidden"),
    ("", "recording"), ("..", "recording"), ("cello (take 2).flac", "cello_take_2"), ("a/b/../c.ogg", "c"),
])
def test_safe_name_keeps_only_a_plain_file_stem(given, expected):
    assert safe_name(given) == expected


# ---------------------------------------------------------------- security
def test_every_request_needs_the_launch_token(studio):
    assert requests.get(studio.base + "/api/state", timeout=10).status_code == 403
    assert requests.get(studio.base + "/", timeout=10).status_code == 403
    wrong = requests.get(studio.base + "/api/state", headers={"X-Studio-Token": "x" + studio.token}, timeout=10)
    assert wrong.status_code == 403 and "token" in wrong.text
    assert studio.get("/api/state").status_code == 200
    # the printed address sets a cookie, with which the page's later requests pass
    session = requests.Session()
    page = session.get(studio.url, timeout=10)
    assert page.status_code == 200 and "Murmur studio" in page.text
    assert session.get(studio.base + "/api/state", timeout=10).status_code == 200


def test_another_site_or_a_rebound_host_name_is_refused_even_with_the_token(studio):
    foreign = studio.get("/api/state", headers={"X-Studio-Token": studio.token, "Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.text
    rebound = studio.get("/api/state", headers={"X-Studio-Token": studio.token, "Host": f"evil.example:{studio.port}"})
    assert rebound.status_code == 403
    own = studio.get("/api/state", headers={"X-Studio-Token": studio.token, "Origin": studio.base})
    assert own.status_code == 200


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port``, from the kernel's tables (hex, as Linux
    writes them: 0100007F is 127.0.0.1, 00000000 any IPv4 address)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.add(address)
    return found


def test_it_listens_on_loopback_only_by_default(studio, tmp_path):
    assert _listening_addresses(studio.port) == {"0100007F"}
    anywhere = StudioProcess(tmp_path / "project", "--host", "0.0.0.0")
    try:  # the check can tell: asked for every address, the kernel's table says so
        assert _listening_addresses(anywhere.port) == {"00000000"}
    finally:
        anywhere.stop()


# ---------------------------------------------------------------- uploads
def test_an_upload_is_decoded_and_kept_inside_the_project_whatever_its_name(studio, clip):
    outside = studio.project.parent
    before = set(outside.rglob("*"))
    for name in ("../../outside.wav", "..\\..\\evil.wav", "/etc/cron.d/x.wav"):
        response = upload(studio, name, clip.read_bytes())
        assert response.status_code == 200, response.text
    after = {p for p in set(outside.rglob("*")) - before if p.is_file()}
    assert all(studio.project in p.parents for p in after), after
    names = {r["name"] for r in studio.get("/api/state").json()["recordings"]}
    assert {"outside", "evil", "x"} <= names
    kept = studio.project / "material" / "outside.wav"
    import soundfile

    info = soundfile.info(str(kept))
    assert info.channels == 1 and info.samplerate == 44100 and abs(info.frames / 44100 - 4.0) < 0.1
    overview = studio.get("/api/recordings/outside/overview").json()
    assert overview["columns"] > 100 and len(overview["max"]) == overview["columns"]
    assert max(overview["max"]) > 0.2  # the chord's peaks, not silence
    assert not any((studio.project / ".incoming").iterdir())


def test_a_file_that_is_not_audio_is_refused_by_name_and_nothing_is_kept(studio):
    before = sorted(p.name for p in (studio.project / "material").iterdir())
    response = upload(studio, "notes.wav", b"this is not audio\n" * 100)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert len(errors) == 1 and "notes.wav" in errors[0] and "cannot be decoded" in errors[0]
    assert sorted(p.name for p in (studio.project / "material").iterdir()) == before
    assert not any((studio.project / ".incoming").iterdir())


def test_an_upload_over_the_size_limit_is_refused_and_nothing_is_kept(tmp_path, clip):
    small = StudioProcess(tmp_path / "project", "--max-upload-mb", "0.05")
    try:
        response = upload(small, "big.wav", clip.read_bytes())  # 350 kB
        assert response.status_code == 400
        assert "upload limit of 0.05 MB" in response.json()["errors"][0]
        assert not any((small.project / "material").iterdir())
        assert not any((small.project / ".incoming").iterdir())
    finally:
        small.stop()


# ---------------------------------------------------------------- regions and runs
def test_regions_are_clipped_merged_and_saved_with_the_project(studio, clip):
    upload(studio, "regions.wav", clip.read_bytes())
    response = studio.send("PUT", "/api/recordings/regions/regions", json={"regions": [[2.5, 3.0], [-1, 1], [0.5, 1.5], [9, 12]]})
    assert response.status_code == 200, response.text
    assert response.json()["regions"] == [[0.0, 1.5], [2.5, 3.0]]
    again = Project(studio.project, sample_rate_hz=44100)  # what a restarted studio reads
    assert [r.regions for r in again.recordings() if r.name == "regions"] == [[(0.0, 1.5), (2.5, 3.0)]]
    bad = studio.send("PUT", "/api/recordings/regions/regions", json={"regions": [["a", 1]]})
    assert bad.status_code == 400 and "seconds" in bad.json()["error"]


def test_the_selection_written_for_the_trainer_is_exactly_the_chosen_regions(tmp_path, clip):
    import soundfile

    project = Project(tmp_path / "p", sample_rate_hz=44100)
    incoming = project.incoming / "x.upload"
    incoming.write_bytes(clip.read_bytes())
    rec = project.add_recording("take.wav", incoming)
    project.set_regions(rec.name, [[0.5, 2.0], [2.2, 2.9]])  # the second is under MIN_REGION_S: left out
    selection, seconds = project.write_selection(tmp_path / "data")
    assert selection == [{"recording": "take", "start_s": 0.5, "end_s": 2.0}] and seconds == pytest.approx(1.5)
    written = sorted((tmp_path / "data").iterdir())
    assert [p.name for p in written] == ["take-1.wav"]
    assert soundfile.info(str(written[0])).frames == int(2.0 * 44100) - int(0.5 * 44100)
    project.set_regions(rec.name, [])
    with pytest.raises(StudioError, match="nothing to learn from"):
        project.write_selection(tmp_path / "data2")


@pytest.mark.parametrize("path", ["/api/recordings/..%2Fstudio/overview", "/api/recordings/nope/audio",
                                  "/api/runs/..%2F..%2Fetc/passwd", "/api/runs/run-20260101-000000/run.json",
                                  "/api/live?run=run-20260101-000000", "/api/live?run=..%2F..%2Fetc"])
def test_names_and_run_ids_that_do_not_exist_are_refused(studio, path):
    response = studio.get(path)
    assert response.status_code in (400, 404)
    assert "root:" not in response.text


def test_training_refuses_options_that_are_not_model_options_before_starting(studio):
    runs_before = studio.get("/api/state").json()["runs"]
    response = studio.send("POST", "/api/train", json={"minutes": 1, "advanced": "--out /etc --units 8"})
    assert response.status_code == 400 and "'--out' is not allowed" in response.json()["error"]
    response = studio.send("POST", "/api/train", json={"minutes": 500})
    assert response.status_code == 400 and "between 0.2 and 120" in response.json()["error"]
    assert studio.get("/api/state").json()["runs"] == runs_before
    assert parse_extra_args("--units 16 --max-epochs=2") == ["--units", "16", "--max-epochs=2"]


@pytest.mark.slow
def test_a_failed_training_shows_the_trainers_reason_and_leaves_no_run(tmp_path, clip):
    server = StudioProcess(tmp_path / "project")
    try:
        assert upload(server, "take.wav", clip.read_bytes()).status_code == 200
        started = server.send("POST", "/api/train", json={"minutes": 1, "advanced": "--units 0"})
        assert started.status_code == 200, started.text
        job = started.json()
        state = server.get("/api/state").json()["train"]
        while state["status"] in ("preparing", "training"):
            server.proc.poll()
            state = server.get("/api/state").json()["train"]
        assert state["status"] == "failed" and state["run"] == job["run"]
        assert "units" in state["error"]
        assert server.get("/api/state").json()["runs"] == []
        assert not any((server.project / "runs").iterdir())
    finally:
        server.stop()


# ---------------------------------------------------------------- live and fleet pieces
@pytest.mark.skipif(sys.platform != "linux", reason="reads the child's niceness with nice(1)")
def test_a_training_runs_at_a_lower_priority_than_the_studio(tmp_path, clip):
    from murmur.studio.training import TRAINER_NICE, TrainJob

    project = Project(tmp_path / "p", sample_rate_hz=44100)
    incoming = project.incoming / "x.upload"
    incoming.write_bytes(clip.read_bytes())
    project.add_recording("take.wav", incoming)
    fake_python = tmp_path / "python"  # stands in for the interpreter: reports its niceness and fails
    fake_python.write_text(f"#!/bin/sh\nnice > {tmp_path / 'nice.txt'}\nexit 3\n")
    fake_python.chmod(0o755)
    job = TrainJob(project, minutes=1, python=str(fake_python))
    job.start()
    job._proc.wait(timeout=30)
    assert int((tmp_path / "nice.txt").read_text()) == min(19, os.nice(0) + TRAINER_NICE)


def test_the_stream_sink_sends_numbered_16_bit_blocks_until_the_engine_stops():
    messages: list[bytes] = []
    calls = {"n": 0}

    def pull(out: np.ndarray) -> bool:
        calls["n"] += 1
        out[:] = 0.5 if calls["n"] % 2 else -1.5  # the second block is clipped
        return calls["n"] <= 4

    sink = StreamSink(messages.append)
    sink.start(pull, sample_rate_hz=44100, block_frames=64)
    sink._thread.join(timeout=10)
    assert len(messages) == 4
    for i, message in enumerate(messages):
        seq = int.from_bytes(message[:4], "little")
        samples = np.frombuffer(message[4:], dtype="<i2")
        assert seq == i and samples.shape == (64,)
        assert (samples == (16383 if i % 2 == 0 else -32768)).all()


def test_the_stream_sink_waits_for_a_late_block_and_counts_it_instead_of_sending_silence():
    messages: list[bytes] = []
    calls = {"n": 0}

    def pull(out: np.ndarray) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            threading.Event().wait(0.05)  # the engine is 50 ms late with this block (34 block periods of 64 samples)
        out[:] = 0.25 * calls["n"]
        return calls["n"] <= 3

    sink = StreamSink(messages.append)
    assert sink.realtime is False  # the engine's pull then waits for a whole block: no silence is made here
    sink.start(pull, sample_rate_hz=44100, block_frames=64)
    sink._thread.join(timeout=10)
    levels = [int(np.frombuffer(m[4:], dtype="<i2")[0]) for m in messages]
    assert levels == [8191, 16383, 24575] and sink.late_blocks >= 1


def test_live_knob_messages_use_the_knobs_names_and_ranges(tiny_bundle):
    from murmur.studio.live import LiveSession

    session = LiveSession(tiny_bundle, lambda message: None)
    session.apply({"set": {"temperature": 9, "gain_db": -20, "hold": True}})
    snapshot = session.store.snapshot()
    assert snapshot.temperature == 2.0 and snapshot.gain_db == -20 and snapshot.hold is True
    with pytest.raises(StudioError, match="unknown control 'volume'"):
        session.apply({"set": {"volume": 1}})
    with pytest.raises(StudioError, match="unknown action"):
        session.apply({"trigger": "next_bundle"})
    with pytest.raises(StudioError, match="hold"):
        session.apply({"set": {"hold": "maybe"}})
    for wrong in ([1, 2], {"set": [1]}, "gain"):
        with pytest.raises(StudioError, match="a knob message is a JSON object"):
            session.apply(wrong)
    session.apply({"trigger": "reseed"})
    assert session.store.take_events() == ("reseed",)


def _block_rms(payload: bytes) -> float:
    return float(np.sqrt(np.mean((np.frombuffer(payload[4:], dtype="<i2") / 32768.0) ** 2)))


def test_the_live_engine_runs_in_its_own_process_and_follows_the_knobs(tiny_bundle):
    """The worker's frames: hello, numbered audio blocks at the bundle's hop, stats; a gain move is heard in the
    stream; a bad knob message is refused before it reaches the worker; end of stdin ends it."""
    import asyncio

    from murmur.studio.live import AUDIO, JSON, LiveProcess

    async def scenario() -> dict:
        live = await LiveProcess.start(tiny_bundle, {"gain_db": 0})
        assert live.hello["block_frames"] == 512 and live.hello["sample_rate_hz"] == 44100
        seqs, levels, stats = [], [], []
        moved_at = None
        while len(seqs) < 400:
            kind, payload = await live.read()
            if kind == JSON:
                stats.append(json.loads(payload)["stats"])
                continue
            assert kind == AUDIO and len(payload) == 4 + 2 * 512
            seqs.append(int.from_bytes(payload[:4], "little"))
            levels.append(_block_rms(payload))
            if len(seqs) == 200:
                live.send({"set": {"gain_db": -60}})
                moved_at = len(seqs)
        with pytest.raises(StudioError, match="unknown control 'volume'"):
            live.send({"set": {"volume": 1}})
        await live.stop()
        return {"seqs": seqs, "levels": levels, "stats": stats, "moved_at": moved_at, "rc": live.proc.returncode}

    result = asyncio.run(scenario())
    assert result["seqs"] == list(range(400))
    before = np.median(result["levels"][100:200])
    after = np.median(result["levels"][300:400])
    assert before > 1e-3, "the live stream was silent"
    assert 20 * np.log10(after / before) < -40
    assert result["stats"] and result["stats"][-1]["blocks_sent"] >= 200
    assert result["rc"] == 0


def test_a_bundle_that_does_not_load_is_named_in_the_live_error(tmp_path):
    import asyncio

    from murmur.studio.live import LiveProcess

    missing = tmp_path / "runs" / "gone" / "bundle"
    with pytest.raises(StudioError, match=re.escape(str(missing))):
        asyncio.run(LiveProcess.start(missing, {}))


def _worker_pids() -> set[int]:
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"murmur.studio.live_worker" in cmdline.read_bytes():
                pids.add(int(cmdline.parent.name))
        except OSError:  # it ended while we looked
            continue
    return pids


def test_a_live_page_streams_through_the_server_and_no_engine_outlives_it(tmp_path, tiny_bundle):
    """Over the real WebSocket: hello, then numbered blocks; a bad knob is answered with its error; the worker
    ends when the page leaves, and when the server itself is killed."""
    import asyncio
    import shutil

    import aiohttp

    run = tmp_path / "project" / "runs" / "run-20261202-000000"
    shutil.copytree(tiny_bundle, run / "bundle")
    (run / "run.json").write_text(json.dumps({"id": run.name}))
    before = _worker_pids()
    server = StudioProcess(tmp_path / "project")

    async def listen() -> tuple[dict, list[int], str]:
        url = f"ws://127.0.0.1:{server.port}/api/live?run={run.name}&token={server.token}"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            hello = (await ws.receive_json(timeout=60))["hello"]
            seqs: list[int] = []
            error = ""
            await ws.send_json({"set": {"volume": 1}})
            while len(seqs) < 50 or not error:
                msg = await ws.receive(timeout=30)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    seqs.append(int.from_bytes(msg.data[:4], "little"))
                elif "error" in msg.json():
                    error = msg.json()["error"]
        return hello, seqs, error  # the page has left: the socket is closed

    try:
        hello, seqs, error = asyncio.run(listen())
        assert hello["bundle_id"] and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert "unknown control 'volume'" in error
        deadline = time.monotonic() + 20
        while _worker_pids() - before and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for the worker to exit after its fade, not synchronising threads
        assert not _worker_pids() - before, "the live engine kept running after the page left"

        async def listen_until_killed() -> None:
            url = f"ws://127.0.0.1:{server.port}/api/live?run={run.name}&token={server.token}"
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                await ws.receive_json(timeout=60)
                assert (await ws.receive(timeout=30)).type == aiohttp.WSMsgType.BINARY
                assert _worker_pids() - before
                server.proc.kill()
                server.proc.wait(timeout=20)

        asyncio.run(listen_until_killed())
        deadline = time.monotonic() + 20
        while _worker_pids() - before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _worker_pids() - before, "the live engine outlived a killed studio"
    finally:
        if server.proc.poll() is None:
            server.stop()


def test_the_page_offers_the_inventorys_names_and_groups(tmp_path):
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[hosts.hall-1]\naddress = "a.local"\ngroups = ["hall"]\n'
                         '[hosts.foyer]\naddress = "b.local"\ngroups = ["ground", "hall"]\n')
    server = StudioProcess(tmp_path / "project", "--inventory", str(inventory))
    try:
        fleet = server.get("/api/state").json()["fleet"]
        assert fleet == {"hosts": ["foyer", "hall-1"], "groups": ["@ground", "@hall"], "error": None}
        inventory.write_text("[hosts.x]\nbogus = 1\n")
        fleet = server.get("/api/state").json()["fleet"]
        assert fleet["hosts"] == [] and "bogus" in fleet["error"]
    finally:
        server.stop()


def test_host_words_that_could_become_ssh_options_are_refused():
    assert parse_hosts("pi1, @room1 user@gallery.local") == ["pi1", "@room1", "user@gallery.local"]
    for bad in ("-oProxyCommand=sh", "pi1;reboot", ""):
        with pytest.raises(StudioError):
            parse_hosts(bad)


def test_the_deploy_tools_summary_is_read_per_host():
    output = """[pi1] verify … ok
summary:
  pi1: OK     playing release r20261201 bundle room-a level -21.4 dBFS underruns 0 uptime 12 s temp 48.2 C clock synchronised throttled unknown (0.8 s)
  pi2: FAILED at gate: the service did not start playing; nothing was switched (31.0 s)
1 of 2 hosts OK; failed: pi2"""
    rows = parse_summary(output.splitlines())
    assert [r["host"] for r in rows] == ["pi1", "pi2"]
    assert rows[0]["ok"] and rows[0]["state"] == "playing" and rows[0]["bundle"] == "room-a"
    assert rows[0]["level"] == "-21.4" and rows[0]["temp"] == "48.2" and rows[0]["throttled"] == "unknown"
    assert not rows[1]["ok"] and rows[1]["text"].startswith("at gate:")
    assert json.dumps(rows)  # what /api/status returns


def test_a_deploy_that_fails_shows_the_tools_reason_per_host(tmp_path, tiny_bundle):
    """A run (as a finished training leaves it) sent to a Pi that does not exist: the page gets the deploy tool's
    own FAILED summary line and exit code, and the run is untouched."""
    import shutil

    project = tmp_path / "project"
    run = project / "runs" / "run-20260101-120000"
    shutil.copytree(tiny_bundle, run / "bundle")
    (run / "run.json").write_text(json.dumps({"id": run.name, "selection": []}))
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host *\n  BatchMode yes\n  ConnectTimeout 3\n")
    server = StudioProcess(project, "--ssh-config", str(ssh_config))
    try:
        refused = server.send("POST", "/api/deploy", json={"run": run.name, "hosts": "-oProxyCommand=touch"})
        assert refused.status_code == 400 and "not a host name" in refused.json()["error"]
        started = server.send("POST", "/api/deploy", json={"run": run.name, "hosts": "nobody@no-such-pi.invalid"})
        assert started.status_code == 200, started.text
        state = started.json()
        while state["running"]:
            state = server.get("/api/deploy").json()
        assert state["code"] == 1
        (row,) = state["summary"]
        assert row["host"] == "nobody@no-such-pi.invalid" and not row["ok"] and row["text"]
        assert sorted(p.name for p in run.iterdir()) == ["bundle", "run.json"]
    finally:
        server.stop()
