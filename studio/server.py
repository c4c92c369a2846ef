"""The studio's HTTP + WebSocket server (aiohttp): the page, a small JSON API, and the live audio stream.

Safe by default: it listens on 127.0.0.1; every request must carry the launch token (``?token=``, the
``X-Studio-Token`` header, or the cookie the page gets on first load) and a Host header naming this server, and a
request with an Origin header must come from this server's own origin. A page on another site therefore cannot
drive it (it can neither read the token nor pass the Origin check), even through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, WSMsgType, web

from murmur import REPO_ROOT

from .errors import StudioError
from .fleet import STATUS_TIMEOUT_S, ToolJob, parse_hosts
from .live import AUDIO, LiveProcess, check_control_message, control_spec
from .midi import CONFIG_NAME, StudioMidi
from .project import Project
from .training import TrainJob, check_no_partial_left

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "murmur_studio"


@dataclass
class Options:
    project: Path
    host: str = "127.0.0.1"
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    max_upload_mb: float = 200.0
    inventory: str | None = None
    ssh_config: str | None = None
    deploy_repo: Path | None = None  # the checkout whose code a deploy ships (the deploy tool's --repo)
    midi_ports: object | None = None  # the MIDI system (None: mido over the ALSA sequencer; tests: FakeMidiPorts)


class Studio:
    """Application state: the project, the one training job, the one deploy job, the live sessions."""

    def __init__(self, options: Options):
        from murmur.trainer.options import TrainOptions

        self.options = options
        self.project = Project(options.project, sample_rate_hz=TrainOptions().sample_rate_hz)
        removed = check_no_partial_left(self.project)
        if removed:
            log.warning("removed %d unfinished run(s) from a studio that stopped mid-training: %s", len(removed), removed)
        self.train: TrainJob | None = None
        self.deploy: ToolJob | None = None
        self.midi = StudioMidi(self.project.root / CONFIG_NAME, ports=options.midi_ports)  # type: ignore[arg-type]
        self.port = options.port
        self.started = time.monotonic()

    # -- security ---------------------------------------------------------------------------------------------------
    def allowed_hosts(self) -> set[str]:
        names = {"127.0.0.1", "localhost", "[::1]"}
        if self.options.host not in ("127.0.0.1", "0.0.0.0", "::"):
            names.add(self.options.host)
        return {f"{name}:{self.port}" for name in names}

    def check(self, request: web.Request) -> None:
        if request.host not in self.allowed_hosts():
            raise web.HTTPForbidden(text=f"studio: Host {request.host!r} is not this studio; open the address it printed")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{request.host}":
            raise web.HTTPForbidden(text=f"studio: requests from {origin!r} are refused (another site)")
        given = (request.query.get("token") or request.headers.get("X-Studio-Token") or request.cookies.get(COOKIE) or "")
        if not hmac.compare_digest(given.encode(), self.options.token.encode()):
            raise web.HTTPForbidden(text="studio: missing or wrong token; open the address the studio printed "
                                         "(it ends in ?token=…)")

    # -- api --------------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        inventory = self.inventory()
        return {
            "project": str(self.project.root),
            "recordings": [r.as_json() for r in self.project.recordings()],
            "runs": self.project.list_runs(),
            "train": self.train.state() if self.train else None,
            "deploy": self.deploy.state() if self.deploy else None,
            "settings": self.project.settings(),
            "max_upload_mb": self.options.max_upload_mb,
            "fleet": self.fleet_names(inventory),
            "midi_hosts": self.midi_hosts(inventory),
            **control_spec(),
        }

    def inventory(self):
        """The deploy tool's inventory (its own lookup), or the ConfigError saying why it cannot be read."""
        from murmur.deploy.inventory import load_inventory
        from murmur.deploy.tool import default_inventory
        from murmur.device.errors import ConfigError

        try:
            return load_inventory(self.options.inventory or default_inventory())
        except ConfigError as exc:
            return exc

    def fleet_names(self, inventory=None) -> dict:
        """Inventory names and @groups for the page's host field."""
        inventory = self.inventory() if inventory is None else inventory
        if isinstance(inventory, Exception):
            return {"hosts": [], "groups": [], "error": str(inventory)}
        groups = sorted({f"@{g}" for host in inventory.hosts.values() for g in host.groups})
        return {"hosts": sorted(inventory.hosts), "groups": groups, "error": None}

    def midi_hosts(self, inventory) -> list[str]:
        """The inventory's Pis whose managed config is the project's murmur.toml: a deploy gives them its [midi]."""
        if isinstance(inventory, Exception):
            return []
        mine = self.midi.config.resolve()
        return sorted(name for name, host in inventory.hosts.items()
                      if host.config is not None and Path(host.config).resolve() == mine)

    def start_training(self, body: dict) -> dict:
        if self.train is not None and self.train.status in ("preparing", "training"):
            raise StudioError("a training is already running; cancel it first or wait for it")
        minutes = number_field(body, "minutes", 3.0)
        job = TrainJob(self.project, minutes=minutes, extra_args=text_field(body, "advanced"))
        job.start()  # settings are kept only for a training that started
        self.project.save_settings({"minutes": minutes, "advanced": job.extra_text})
        self.train = job
        return job.state()

    def tool_args(self) -> list[str]:
        args = []
        if self.options.inventory:
            args += ["--inventory", self.options.inventory]
        if self.options.ssh_config:
            args += ["--ssh-config", self.options.ssh_config]
        return args

    def start_deploy(self, body: dict) -> dict:
        if self.deploy is not None and self.deploy.code is None:
            raise StudioError("a deploy is already running; wait for its summary")
        hosts = parse_hosts(text_field(body, "hosts"))
        bundle = self.project.run_dir(text_field(body, "run")) / "bundle"
        extra = ["--bundle-override", str(bundle)]
        if self.options.deploy_repo:
            extra += ["--repo", str(self.options.deploy_repo)]
        self.deploy = ToolJob("deploy", hosts, extra=extra, tool_args=self.tool_args(), cwd=REPO_ROOT).start()
        return self.deploy.state()

    def fleet_status(self, body: dict) -> dict:
        hosts = parse_hosts(text_field(body, "hosts"))
        job = ToolJob("status", hosts, extra=[], tool_args=self.tool_args(), cwd=REPO_ROOT).start()
        finished = job.wait(STATUS_TIMEOUT_S)
        state = job.state()
        if not finished:
            state["lines"].append(f"status: no answer within {STATUS_TIMEOUT_S} s; stopped")
        return state


async def json_object(request: web.Request) -> dict:
    """The request's body as a JSON object; StudioError (HTTP 400) naming what was wrong and what to send."""
    try:
        body = await request.json()
    except ValueError as exc:  # json.JSONDecodeError, or a body that is not UTF-8
        raise StudioError(f"{request.path}: the body is not JSON ({exc}); send a JSON object, e.g. {{\"minutes\": 3}}") \
            from exc
    if not isinstance(body, dict):
        raise StudioError(f"{request.path}: the body must be a JSON object {{…}}, not {type(body).__name__}")
    return body


def text_field(body: dict, key: str, default: str = "", *, max_chars: int = 2000) -> str:
    """``body[key]`` as text (a string, or absent for ``default``); StudioError for any other type or a huge one."""
    value = body.get(key, default)
    if not isinstance(value, str):
        raise StudioError(f"{key!r} must be text, got {type(value).__name__} {str(value)[:40]!r}")
    if len(value) > max_chars:
        raise StudioError(f"{key!r} is {len(value)} characters long; at most {max_chars} are accepted")
    return value


def number_field(body: dict, key: str, default: float) -> float:
    """``body[key]`` as a finite number (absent: ``default``); StudioError for text, booleans, lists, NaN or inf."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StudioError(f"{key}={value!r} is not a number; send a number such as {default:g}")
    return float(value)


def json_error(exc: Exception, status: int = 400) -> web.Response:
    return web.json_response({"error": str(exc)}, status=status)


def guard(studio: Studio):
    """The middleware every request passes first: ``Studio.check`` (token, Host, Origin: HTTP 403), then the
    handler, whose StudioError (a problem the artist can fix) becomes HTTP 400 with ``{"error": text}``."""

    @web.middleware
    async def checked(request: web.Request, handler):
        studio.check(request)
        try:
            return await handler(request)
        except StudioError as exc:
            return json_error(exc)

    return checked


RUN_FILES = ("bundle-preview.wav", "bundle-preview.png", "log.txt", "run.json")  # what /api/runs/RUN/FILE serves


class Handlers:
    """One coroutine per route (``routes``): read the request, ask the Studio (blocking work in a thread, off the
    event loop), answer JSON or a file. Security is not here: ``guard`` has checked every request already."""

    def __init__(self, studio: Studio):
        self.studio = studio

    # -- the page ---------------------------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC / "index.html")
        response.set_cookie(COOKIE, self.studio.options.token, httponly=True, samesite="Strict")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}  # served by looking up what exists, never a path
        if name not in files:
            raise web.HTTPNotFound()
        return web.FileResponse(files[name])

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self.studio.state))

    # -- recordings -------------------------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        """Multipart files -> recordings; ``{"added": [...], "errors": [...]}``, HTTP 400 when none was kept."""
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError) as exc:  # aiohttp's words for "not multipart"
            raise StudioError("an upload is multipart/form-data with one or more 'file' parts "
                              f"(the page's drop zone sends that); got {request.content_type or 'no content type'}") \
                from exc
        added, errors = [], []
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.filename:
                continue
            try:
                added.append(await self._keep_upload(part, part.filename))
            except StudioError as exc:
                errors.append(str(exc))
        if not added and not errors:
            raise StudioError("the upload held no file: send each audio file as a multipart 'file' part with its name")
        return web.json_response({"added": added, "errors": errors}, status=200 if added else 400)

    async def _keep_upload(self, part: BodyPartReader, filename: str) -> dict:
        """One uploaded file, streamed into the project's incoming/ under the size limit, then decoded and kept by the
        project under a name it makes; the upload itself is always removed. Raises StudioError."""
        limit_mb = self.studio.options.max_upload_mb
        limit = int(limit_mb * 1e6)
        fd, tmp_name = tempfile.mkstemp(dir=self.studio.project.incoming, suffix=".upload")
        tmp = Path(tmp_name)
        size = 0
        try:
            with open(fd, "wb") as out:
                while chunk := await part.read_chunk(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise StudioError(f"{filename}: larger than the studio's upload limit of {limit_mb:g} MB; "
                                          "trim it, or start the studio with --max-upload-mb N")
                    out.write(chunk)
            recording = await asyncio.to_thread(self.studio.project.add_recording, filename, tmp)
            return recording.as_json()
        finally:
            tmp.unlink(missing_ok=True)

    async def overview(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self.studio.project.overview, request.match_info["name"]))

    async def recording_audio(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.studio.project.recording_path(request.match_info["name"]))

    async def regions(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        regions = body.get("regions", [])
        if not isinstance(regions, list) or len(regions) > 1000:
            raise StudioError("'regions' must be a list of at most 1000 [start_s, end_s] pairs in seconds")
        recording = await asyncio.to_thread(self.studio.project.set_regions, request.match_info["name"], regions)
        return web.json_response(recording.as_json())

    async def remove(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.studio.project.remove_recording, request.match_info["name"])
        return web.json_response({"ok": True})

    # -- training and runs ------------------------------------------------------------------------------------------
    async def train(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        return web.json_response(await asyncio.to_thread(self.studio.start_training, body))

    async def cancel(self, request: web.Request) -> web.Response:
        if self.studio.train is None:
            raise StudioError("no training to cancel")
        self.studio.train.cancel()
        return web.json_response(self.studio.train.state())

    async def run_file(self, request: web.Request) -> web.StreamResponse:
        folder = self.studio.project.run_dir(request.match_info["run"])
        wanted = request.match_info["file"]
        if wanted not in RUN_FILES or not (folder / wanted).is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(folder / wanted)

    # -- the fleet --------------------------------------------------------------------------------------------------
    async def deploy(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        return web.json_response(self.studio.start_deploy(body))

    async def deploy_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.studio.deploy.state() if self.studio.deploy else None)

    async def status(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        return web.json_response(await asyncio.to_thread(self.studio.fleet_status, body))

    # -- the MIDI controller ----------------------------------------------------------------------------------------
    async def midi(self, request: web.Request) -> web.Response:
        """The controller, its mappings and the learn mode; with ``?after=VERSION`` it answers once something
        changed after that version (a knob moved by MIDI, a mapping learnt, the controller plugged or unplugged),
        or after ``wait`` seconds (at most 25): the page's long poll."""
        midi = self.studio.midi
        after = request.query.get("after")
        if after is not None:
            try:
                after_version, wait_s = int(after), float(request.query.get("wait", "20"))
                if not math.isfinite(wait_s):
                    raise ValueError(wait_s)
            except ValueError as exc:
                raise StudioError(f"/api/midi?after={after!r}&wait={request.query.get('wait')!r}: both are numbers "
                                  "(the last version the page saw, and seconds to wait for a newer one)") from exc
            await midi.wait(after_version, min(max(wait_s, 0.0), 25.0))
            return web.json_response(midi.state(after_version))
        return web.json_response(midi.state())

    async def midi_learn(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        target = body.get("target")
        if target is not None and not isinstance(target, str):
            raise StudioError(f"'target' is the name of a control to learn (e.g. \"fidelity\") or null to stop "
                              f"waiting, not {target!r}")
        return web.json_response(self.studio.midi.learn(target))

    async def midi_controls(self, request: web.Request) -> web.Response:
        """The page's knobs while nothing plays (playing, they come over the live socket): so a MIDI knob picks
        up from what the page shows."""
        changes, _ = check_control_message(await json_object(request))
        self.studio.midi.page_set(changes)
        return web.json_response({"ok": True})

    # -- live listening ---------------------------------------------------------------------------------------------
    async def live(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket of one listening page: a live worker for the run's bundle, its frames to the page
        (``_worker_to_page``), the page's knob messages and the MIDI controller's to the worker; the worker stops
        when the page leaves."""
        bundle = self.studio.project.run_dir(request.query.get("run", "")) / "bundle"  # an unknown run: HTTP 400
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        try:
            controls = json.loads(request.query.get("controls", "{}"))
            player = await LiveProcess.start(bundle, controls)
        except (StudioError, ValueError) as exc:
            await ws.send_json({"error": str(exc)})
            await ws.close()
            return ws
        await ws.send_json({"hello": player.hello})
        midi = self.studio.midi
        midi.page_set(check_control_message({"set": controls})[0])
        unsubscribe = midi.subscribe(player.send)
        sender = asyncio.create_task(self._worker_to_page(player, ws))
        try:
            await self._page_to_worker(ws, player, midi)
        finally:
            unsubscribe()
            await player.stop()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):  # the page closed mid-send
                await sender
        return ws

    @staticmethod
    async def _worker_to_page(player: LiveProcess, ws: web.WebSocketResponse) -> None:
        """The worker's frames as they come: audio as binary messages, stats and errors as text; then, if the worker
        ended while the page is still there, an error naming its exit code."""
        while (frame := await player.read()) is not None:
            kind, payload = frame
            if ws.closed:  # keep draining while the worker fades out, so its pipe never fills
                continue
            if kind == AUDIO:
                await ws.send_bytes(payload)
            else:
                await ws.send_str(payload.decode())
        if not ws.closed:
            await ws.send_json({"error": f"the live engine stopped (exit code {player.proc.returncode}); "
                                         "its messages are in the studio's terminal"})
            await ws.close()

    @staticmethod
    async def _page_to_worker(ws: web.WebSocketResponse, player: LiveProcess, midi: StudioMidi) -> None:
        """The page's knob messages (JSON text) to the worker (and the MIDI mirror) until the page leaves; a refused
        one is answered with an error message and the stream goes on."""
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    message = json.loads(msg.data)
                    player.send(message)
                    midi.page_set(check_control_message(message)[0])
                except (StudioError, ValueError) as exc:
                    await ws.send_json({"error": str(exc)})
            elif msg.type == WSMsgType.ERROR:
                break


def routes(handlers: Handlers) -> list[web.RouteDef]:
    """Every URL the studio answers, in matching order (GET routes answer HEAD too)."""
    h = handlers
    return [
        web.get("/", h.index),
        web.get("/favicon.ico", h.favicon),
        web.get("/static/{name}", h.static),
        web.get("/api/state", h.state),
        web.post("/api/recordings", h.upload),
        web.get("/api/recordings/{name}/overview", h.overview),
        web.get("/api/recordings/{name}/audio", h.recording_audio),
        web.put("/api/recordings/{name}/regions", h.regions),
        web.delete("/api/recordings/{name}", h.remove),
        web.post("/api/train", h.train),
        web.post("/api/train/cancel", h.cancel),
        web.get("/api/runs/{run}/{file}", h.run_file),
        web.post("/api/deploy", h.deploy),
        web.get("/api/deploy", h.deploy_state),
        web.post("/api/status", h.status),
        web.get("/api/live", h.live),
        web.get("/api/midi", h.midi),
        web.post("/api/midi/learn", h.midi_learn),
        web.post("/api/midi/controls", h.midi_controls),
    ]


def build_app(studio: Studio) -> web.Application:
    """The aiohttp application: ``guard`` before every handler, request bodies up to the upload limit + 64 kB."""
    app = web.Application(middlewares=[guard(studio)], client_max_size=int(studio.options.max_upload_mb * 1e6) + 65536)
    app.add_routes(routes(Handlers(studio)))

    async def midi_on(app: web.Application) -> None:
        studio.midi.start(asyncio.get_running_loop())

    async def midi_off(app: web.Application) -> None:
        await studio.midi.close()

    async def midi_wake(app: web.Application) -> None:
        studio.midi.wake()

    app.on_startup.append(midi_on)
    app.on_shutdown.append(midi_wake)
    app.on_cleanup.append(midi_off)
    return app


async def serve(studio: Studio, on_ready) -> None:
    """Run until cancelled; ``on_ready(url)`` once the socket listens (the port is known then, even for port 0)."""
    app = build_app(studio)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, studio.options.host, studio.options.port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    studio.port = sockets[0].getsockname()[1] if sockets else studio.options.port
    shown = "127.0.0.1" if studio.options.host in ("0.0.0.0", "::") else studio.options.host
    on_ready(f"http://{shown}:{studio.port}/?token={studio.options.token}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
