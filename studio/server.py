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
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, WSMsgType, web

from murmur import REPO_ROOT

from .errors import StudioError
from .fleet import STATUS_TIMEOUT_S, ToolJob, parse_hosts
from .live import AUDIO, LiveProcess, control_spec
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
        return {
            "project": str(self.project.root),
            "recordings": [r.as_json() for r in self.project.recordings()],
            "runs": self.project.list_runs(),
            "train": self.train.state() if self.train else None,
            "deploy": self.deploy.state() if self.deploy else None,
            "settings": self.project.settings(),
            "max_upload_mb": self.options.max_upload_mb,
            "fleet": self.fleet_names(),
            **control_spec(),
        }

    def fleet_names(self) -> dict:
        """Inventory names and @groups for the page's host field (the deploy tool's own inventory lookup)."""
        from murmur.deploy.inventory import load_inventory
        from murmur.deploy.tool import default_inventory
        from murmur.device.errors import ConfigError

        try:
            inventory = load_inventory(self.options.inventory or default_inventory())
        except ConfigError as exc:
            return {"hosts": [], "groups": [], "error": str(exc)}
        groups = sorted({f"@{g}" for host in inventory.hosts.values() for g in host.groups})
        return {"hosts": sorted(inventory.hosts), "groups": groups, "error": None}

    def start_training(self, body: dict) -> dict:
        if self.train is not None and self.train.status in ("preparing", "training"):
            raise StudioError("a training is already running; cancel it first or wait for it")
        try:
            minutes = float(body.get("minutes", 3))
        except (TypeError, ValueError) as exc:
            raise StudioError(f"minutes={body.get('minutes')!r} is not a number") from exc
        job = TrainJob(self.project, minutes=minutes, extra_args=str(body.get("advanced", "")))
        self.project.save_settings({"minutes": minutes, "advanced": job.extra_text})
        job.start()
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
        hosts = parse_hosts(str(body.get("hosts", "")))
        bundle = self.project.run_dir(str(body.get("run", ""))) / "bundle"
        extra = ["--bundle-override", str(bundle)]
        if self.options.deploy_repo:
            extra += ["--repo", str(self.options.deploy_repo)]
        self.deploy = ToolJob("deploy", hosts, extra=extra, tool_args=self.tool_args(), cwd=REPO_ROOT).start()
        return self.deploy.state()

    def fleet_status(self, body: dict) -> dict:
        hosts = parse_hosts(str(body.get("hosts", "")))
        job = ToolJob("status", hosts, extra=[], tool_args=self.tool_args(), cwd=REPO_ROOT).start()
        finished = job.wait(STATUS_TIMEOUT_S)
        state = job.state()
        if not finished:
            state["lines"].append(f"status: no answer within {STATUS_TIMEOUT_S} s; stopped")
        return state


def json_error(exc: Exception, status: int = 400) -> web.Response:
    return web.json_response({"error": str(exc)}, status=status)


def build_app(studio: Studio) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler):
        studio.check(request)
        try:
            return await handler(request)
        except StudioError as exc:
            return json_error(exc)

    app = web.Application(middlewares=[guard], client_max_size=int(studio.options.max_upload_mb * 1e6) + 65536)
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC / "index.html")
        response.set_cookie(COOKIE, studio.options.token, httponly=True, samesite="Strict")
        response.headers["Cache-Control"] = "no-store"
        return response

    @routes.get("/favicon.ico")
    async def favicon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    @routes.get("/static/{name}")
    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:
            raise web.HTTPNotFound()
        return web.FileResponse(files[name])

    @routes.get("/api/state")
    async def state(request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(studio.state))

    @routes.post("/api/recordings")
    async def upload(request: web.Request) -> web.Response:
        reader = await request.multipart()
        added, errors = [], []
        limit = int(studio.options.max_upload_mb * 1e6)
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.filename:
                continue
            filename = part.filename
            fd, tmp_name = tempfile.mkstemp(dir=studio.project.incoming, suffix=".upload")
            tmp = Path(tmp_name)
            size = 0
            try:
                with open(fd, "wb") as out:
                    while chunk := await part.read_chunk(1 << 16):
                        size += len(chunk)
                        if size > limit:
                            raise StudioError(f"{filename}: larger than the studio's upload limit of "
                                              f"{studio.options.max_upload_mb:g} MB; trim it, or start the studio "
                                              "with --max-upload-mb N")
                        out.write(chunk)
                recording = await asyncio.to_thread(studio.project.add_recording, filename, tmp)
                added.append(recording.as_json())
            except StudioError as exc:
                errors.append(str(exc))
            finally:
                tmp.unlink(missing_ok=True)
        return web.json_response({"added": added, "errors": errors}, status=200 if added or not errors else 400)

    @routes.get("/api/recordings/{name}/overview")
    async def overview(request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(studio.project.overview, request.match_info["name"]))

    @routes.get("/api/recordings/{name}/audio")
    async def recording_audio(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(studio.project.recording_path(request.match_info["name"]))

    @routes.put("/api/recordings/{name}/regions")
    async def regions(request: web.Request) -> web.Response:
        body = await request.json()
        rec = await asyncio.to_thread(studio.project.set_regions, request.match_info["name"], body.get("regions", []))
        return web.json_response(rec.as_json())

    @routes.delete("/api/recordings/{name}")
    async def remove(request: web.Request) -> web.Response:
        await asyncio.to_thread(studio.project.remove_recording, request.match_info["name"])
        return web.json_response({"ok": True})

    @routes.post("/api/train")
    async def train(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(await asyncio.to_thread(studio.start_training, body))

    @routes.post("/api/train/cancel")
    async def cancel(request: web.Request) -> web.Response:
        if studio.train is None:
            raise StudioError("no training to cancel")
        studio.train.cancel()
        return web.json_response(studio.train.state())

    @routes.get("/api/runs/{run}/{file}")
    async def run_file(request: web.Request) -> web.StreamResponse:
        folder = studio.project.run_dir(request.match_info["run"])
        wanted = request.match_info["file"]
        if wanted not in ("bundle-preview.wav", "bundle-preview.png", "log.txt", "run.json"):
            raise web.HTTPNotFound()
        if not (folder / wanted).is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(folder / wanted)

    @routes.post("/api/deploy")
    async def deploy(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(studio.start_deploy(body))

    @routes.get("/api/deploy")
    async def deploy_state(request: web.Request) -> web.Response:
        return web.json_response(studio.deploy.state() if studio.deploy else None)

    @routes.post("/api/status")
    async def status(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(await asyncio.to_thread(studio.fleet_status, body))

    @routes.get("/api/live")
    async def live(request: web.Request) -> web.StreamResponse:
        bundle = studio.project.run_dir(request.query.get("run", "")) / "bundle"  # an unknown run: HTTP 400
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        try:
            player = await LiveProcess.start(bundle, json.loads(request.query.get("controls", "{}")))
        except (StudioError, ValueError) as exc:
            await ws.send_json({"error": str(exc)})
            await ws.close()
            return ws
        await ws.send_json({"hello": player.hello})

        async def pump() -> None:  # the worker's frames, as they come: audio as binary, stats and errors as text
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

        sender = asyncio.create_task(pump())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        player.send(json.loads(msg.data))
                    except (StudioError, ValueError) as exc:
                        await ws.send_json({"error": str(exc)})
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            await player.stop()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):  # the page closed mid-send
                await sender
        return ws

    app.add_routes(routes)
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
