"""`python -m murmur.studio` (`make studio`, `murmur studio`): start the studio and print its address.

    studio: http://127.0.0.1:PORT/?token=…

It opens that address in the browser unless ``--no-browser``. Ctrl-C stops it; a training in progress is
cancelled (nothing half-written).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import webbrowser
from pathlib import Path

DEFAULT_PORT = 8765


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m murmur.studio", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path("studio-project"),
                        help="project folder: recordings, selections and every training run (default ./studio-project)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only). Another address makes "
                             "the studio reachable from the network: anyone with the printed token can use it")
    parser.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest recording accepted (default 200 MB)")
    parser.add_argument("--inventory", default=None, help="deploy inventory TOML (default: $MURMUR_INVENTORY or "
                                                          "deploy/inventory.toml), for host names and @groups")
    parser.add_argument("--ssh-config", default=os.environ.get("MURMUR_SSH_CONFIG"), help="ssh -F file for deploys")
    parser.add_argument("--deploy-repo", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not (0 <= args.port <= 65535):
        print(f"studio: --port {args.port} is not a port number (0-65535)", file=sys.stderr)
        return 2
    try:
        from .server import Options, Studio, serve
    except ImportError as exc:
        print(f"studio: {exc.name or exc} is not installed; install the studio's packages: "
              "pip install -r requirements/studio.txt (or pip install \".[trainer,studio]\")", file=sys.stderr)
        return 2
    from .errors import StudioError

    try:
        studio = Studio(Options(project=args.project, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
                                inventory=args.inventory, ssh_config=args.ssh_config, deploy_repo=args.deploy_repo))
    except (StudioError, OSError) as exc:
        print(f"studio: {exc}", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        print(f"studio: {url}", flush=True)
        if args.host not in ("127.0.0.1", "localhost"):
            print(f"studio: listening on {args.host}: reachable from the network by anyone with the token", flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    async def run() -> None:
        task = asyncio.create_task(serve(studio, ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, task.cancel)
            except NotImplementedError:  # Windows: Ctrl-C raises KeyboardInterrupt instead
                pass
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"studio: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
              "choose another with ARGS=\"--port N\" (0 = any free port)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        if studio.train is not None:
            studio.train.cancel()
    print("studio: stopped", file=sys.stderr)
    return 0
