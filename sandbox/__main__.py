"""Command line: `python -m sandbox` serves every simulator on one loopback port."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import sys

from sandbox.context import SandboxConfig
from sandbox.context import SandboxContext

log = logging.getLogger("sandbox")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the CLI flags."""
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700, help="0 picks a free port")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--stripe-webhook-url")
    p.add_argument("--stripe-webhook-secret")
    p.add_argument("--zapmail-webhook-url")
    p.add_argument("--domain-activation-s", type=float)
    p.add_argument("--mailbox-activation-s", type=float)
    p.add_argument("--export-delay-s", type=float)
    p.add_argument("--mailbox-slots", type=int, help="Zapmail mailbox slots bought (1000)")
    p.add_argument("--no-rate-limits", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process dies"
    )
    args = p.parse_args(argv)
    if args.speed <= 0:
        p.error("--speed must be > 0")
    if not args.allow_remote and not _is_loopback(args.host):
        p.error(f"refusing non-loopback host {args.host!r} (pass --allow-remote to override)")
    return args


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_config(args: argparse.Namespace) -> SandboxConfig:
    """Turn CLI flags into a SandboxConfig."""
    cfg = SandboxConfig(speed=args.speed, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms)
    cfg.rate_limits_enabled = not args.no_rate_limits
    optional = {
        "stripe_webhook_url": args.stripe_webhook_url,
        "stripe_webhook_secret": args.stripe_webhook_secret,
        "zapmail_webhook_url": args.zapmail_webhook_url,
        "domain_activation_s": args.domain_activation_s,
        "mailbox_activation_s": args.mailbox_activation_s,
        "export_delay_s": args.export_delay_s,
        "zapmail_mailbox_slots": args.mailbox_slots,
        "seed": args.seed,
    }
    cfg.merge({k: v for k, v in optional.items() if v is not None})
    return cfg


async def serve(args: argparse.Namespace) -> None:
    """Bind, build the app, start uvicorn and print the URL once it is listening."""
    import uvicorn

    from sandbox.app import build_app

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets of such a
    # listener, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    display = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    url = f"http://{display}:{port}"
    ctx = SandboxContext(build_config(args), public_url=url)
    app = build_app(ctx)
    config = uvicorn.Config(
        app, log_level=args.log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(f"Sandbox: {url}", flush=True)  # noqa: T201  (the CLI startup line)
    watchdog = asyncio.create_task(_watch_parent(server)) if args.exit_with_parent else None
    try:
        await task
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog


async def _watch_parent(server: object) -> None:
    """Ask uvicorn to exit when the process that started us is gone (no leaked servers)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    server.should_exit = True  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        sys.stderr.write(f"Sandbox failed to start: {exc}\n")
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
