"""The `ideinstein` command line: serve, migrate, makemigrations, config, createsuperuser."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from api.access_log import AccessLogger
from core.errors import AppError, ConfigError
from core.logs import configure_logging, get_logger
from core.settings import LogFormat, Settings, load_settings
from db.connection import open_database
from db.migrate import (
    applied_migrations,
    apply_migrations,
    make_migrations,
    pending_migrations,
    rollback_migrations,
)

log = get_logger("ideinstein")

PASSWORD_ENV = "IDEINSTEIN_SUPERUSER_PASSWORD"  # noqa: S105 - a variable name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ideinstein", description="IdEinstein hub")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web and Socket.IO server")
    serve.add_argument("--host", help="address to bind (default: HOST setting)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT setting)")
    serve.add_argument(
        "--no-uvloop", action="store_true", help="use asyncio's own loop even if uvloop is there"
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply migrations at start (they are applied in embedded mode by default)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply (or roll back) database migrations")
    group = migrate.add_mutually_exclusive_group()
    group.add_argument("--downgrade", type=int, metavar="N", help="roll back the newest N")
    group.add_argument("--list", action="store_true", help="show applied and pending migrations")
    migrate.set_defaults(func=cmd_migrate)

    makemigrations = commands.add_parser(
        "makemigrations", help="write a migration file for model changes (developers)"
    )
    makemigrations.add_argument("--name", help="suffix of the new file's name")
    makemigrations.set_defaults(func=cmd_makemigrations)

    worker = commands.add_parser("worker", help="run a render farm Celery worker (needs Redis)")
    worker.add_argument("--concurrency", type=int, help="worker processes (default: CPU count)")
    worker.add_argument(
        "--gpu",
        choices=("auto", "on", "off"),
        default="auto",
        help="OpenGL backend: auto = EGL (GPU, or Mesa on the CPU) then OSMesa; on = EGL only; "
        "off = OSMesa only",
    )
    worker.set_defaults(func=cmd_worker)

    chat = commands.add_parser("chat", help="chat through the hub from a terminal")
    chat.add_argument("--url", help="the hub (default: PUBLIC_URL)")
    chat.add_argument("--email", required=True)
    chat.add_argument("--conversation", help="join this conversation (staff)")
    chat.add_argument("--subject", default="Terminal chat", help="subject of a new conversation")
    chat.set_defaults(func=cmd_chat)

    config = commands.add_parser("config", help="print the effective settings, secrets hidden")
    config.add_argument("--json", action="store_true", help="as JSON")
    config.set_defaults(func=cmd_config)

    createsuperuser = commands.add_parser("createsuperuser", help="create a super_admin account")
    createsuperuser.add_argument("--email", required=True)
    createsuperuser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from standard input (else ${PASSWORD_ENV}, else a prompt)",
    )
    createsuperuser.set_defaults(func=cmd_createsuperuser)

    email = commands.add_parser("email", help="outgoing mail")
    email_commands = email.add_subparsers(dest="email_command", required=True, metavar="ACTION")
    dns = email_commands.add_parser(
        "dns-records", help="print the SPF, DKIM and DMARC TXT records for MAIL_FROM's domain"
    )
    dns.set_defaults(func=cmd_email_dns_records)
    _add_storage_commands(commands)
    return parser


def _loop_factory(
    settings: Settings, *, disable_uvloop: bool
) -> Callable[[], asyncio.AbstractEventLoop]:
    if settings.uvloop and not disable_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            log.warning("serve.uvloop_missing")
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from api.app import create_app  # the app pulls in every floor: import it only to serve

    host = args.host or settings.host
    port = args.port or settings.port
    loop = _loop_factory(settings, disable_uvloop=args.no_uvloop)()
    asyncio.set_event_loop(loop)
    if settings.is_embedded_database and not args.no_migrate:
        applied = loop.run_until_complete(apply_migrations(settings.database_url))
        if applied:
            log.info("serve.migrated", applied=applied)
    log.info("serve.starting", url=f"http://{host}:{port}", loop=type(loop).__module__)
    # web.run_app's loop, with the Socket.IO path routed around the middlewares (_serve)
    main_task = loop.create_task(
        _serve(create_app(settings), host=host, port=port, settings=settings)
    )
    try:
        loop.run_until_complete(main_task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main_task.done():
            main_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main_task)
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return 0


async def _serve(app: web.Application, *, host: str, port: int, settings: Settings) -> None:
    """Serve `app` until SIGINT or SIGTERM. Socket.IO requests go straight to Engine.IO
    (hub.fastio.SocketIOFirst): an idle websocket then holds no middleware frames."""
    from api.keys import DATABASE, SOCKETS
    from hub.fastio import SocketIOFirst

    runner = web.AppRunner(
        app,
        handle_signals=True,
        shutdown_timeout=settings.shutdown_timeout,
        access_log_class=AccessLogger,
    )
    await runner.setup()
    try:
        server = runner.server
        if server is None:  # pragma: no cover - setup() made it
            raise RuntimeError("the web server was not set up")
        server.request_handler = SocketIOFirst(
            app[SOCKETS], server.request_handler, enter=app[DATABASE].make_current
        )
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()  # until the signal handlers raise GracefulExit
    finally:
        await runner.cleanup()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    url = settings.database_url
    if args.list:
        applied = asyncio.run(applied_migrations(url))
        pending = asyncio.run(pending_migrations(url))
        for name in applied:
            print(f"[x] {name}")
        for name in pending:
            print(f"[ ] {name}")
        return 0
    if args.downgrade is not None:
        if args.downgrade < 1:
            print("ideinstein: --downgrade takes a number of at least 1", file=sys.stderr)
            return 2
        names = asyncio.run(rollback_migrations(url, steps=args.downgrade))
        print("rolled back: " + (", ".join(names) if names else "nothing"))
        return 0
    names = asyncio.run(apply_migrations(url))
    print("applied: " + (", ".join(names) if names else "nothing, the schema is up to date"))
    return 0


def cmd_makemigrations(settings: Settings, args: argparse.Namespace) -> int:
    paths = asyncio.run(make_migrations(name=args.name))
    for path in paths:
        print(f"created {path}")
    if not paths:
        print("no changes")
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from render_farm.backend import GpuMode, RendererUnavailableError, select_backend
    from render_farm.celery_app import create_celery, worker_argv
    from render_farm.tasks import register_tasks

    app = create_celery(settings)  # refuses to start without REDIS_URL
    try:  # the self-test render: a worker that cannot render takes no jobs
        backend = asyncio.run(
            select_backend(GpuMode(args.gpu), egl_device=settings.render_egl_device)
        )
    except RendererUnavailableError as exc:
        log.error("worker.no_renderer", reason=str(exc))
        print(f"ideinstein: worker not started: {exc}", file=sys.stderr)
        return 1
    log.info("worker.renderer", backend=backend)
    register_tasks(app, settings, backend=backend)
    app.worker_main(worker_argv(concurrency=args.concurrency, log_level=settings.log_level))
    return 0


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from api.chat_client import run_chat

    password = os.environ.get("IDEINSTEIN_PASSWORD") or getpass.getpass("Password: ")
    return asyncio.run(
        run_chat(
            url=(args.url or settings.public_url).rstrip("/"),
            email=args.email,
            password=password,
            conversation=args.conversation,
            subject=args.subject,
        )
    )


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    values = settings.redacted()
    if args.json:
        print(json.dumps(values, indent=2, sort_keys=True))
    else:
        width = max(len(name) for name in values)
        for name, value in values.items():
            shown = ",".join(value) if isinstance(value, list) else value
            print(f"{name.upper():<{width}}  {'' if shown is None else shown}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise AppError("password_mismatch", "The passwords do not match")
    return first


def cmd_createsuperuser(settings: Settings, args: argparse.Namespace) -> int:
    from api.identity.accounts import create_superuser

    password = _read_password(args)

    async def run() -> Any:
        async with open_database(settings.database_url):
            return await create_superuser(email=args.email, password=password)

    account = asyncio.run(run())
    print(f"created super_admin {account.email} ({account.id})")
    return 0


def cmd_email_dns_records(settings: Settings, args: argparse.Namespace) -> int:
    from hub.email.dkim import dns_records

    records = dns_records(settings)
    if settings.dkim_private_key is None:
        print("; DKIM_PRIVATE_KEY is not set: mail goes out unsigned and no DKIM record is due")
    for record in records:
        print(f"; {record.note}")
        print(record.zone_line())
    return 0


def _add_storage_commands(commands: Any) -> None:
    storage = commands.add_parser("storage", help="the S3 blob bucket: tiering and protection")
    actions = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    lifecycle = actions.add_parser(
        "lifecycle",
        help="move blobs to cheaper storage classes as they age; abort stale multipart uploads",
    )
    lifecycle.add_argument(
        "--ia-days", type=int, default=30, metavar="N", help="to STANDARD_IA after N days (30)"
    )
    lifecycle.add_argument(
        "--archive-days", type=int, default=365, metavar="M", help="to the archive class (365)"
    )
    lifecycle.add_argument(
        "--archive-class",
        choices=["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"],
        default="GLACIER",
        help="GLACIER and DEEP_ARCHIVE need a restore before a download; GLACIER_IR does not",
    )
    lifecycle.add_argument(
        "--abort-multipart-days",
        type=int,
        default=7,
        metavar="K",
        help="abort multipart uploads left incomplete for K days (7)",
    )
    lifecycle.add_argument(
        "--noncurrent-days",
        type=int,
        default=90,
        metavar="D",
        help="delete old object versions (kept once versioning is on) after D days (90)",
    )
    lifecycle.set_defaults(func=cmd_storage_lifecycle)
    protect = actions.add_parser(
        "protect", help="turn on bucket versioning and, with a replica bucket, replication"
    )
    protect.add_argument("--replica-bucket", help="bucket that receives a copy of every blob")
    protect.add_argument("--replication-role", help="IAM role ARN S3 replicates with")
    protect.add_argument(
        "--replica-storage-class", default="STANDARD_IA", help="class of the copies (STANDARD_IA)"
    )
    protect.set_defaults(func=cmd_storage_protect)


def cmd_storage_lifecycle(settings: Settings, args: argparse.Namespace) -> int:
    from storage.s3_admin import ArchiveClass, LifecyclePolicy, apply_lifecycle, open_bucket

    policy = LifecyclePolicy(
        ia_days=args.ia_days,
        archive_days=args.archive_days,
        archive_class=ArchiveClass(args.archive_class),
        abort_multipart_days=args.abort_multipart_days,
        noncurrent_days=args.noncurrent_days,
    )
    policy.check()  # before connecting

    async def run() -> list[Any]:
        async with open_bucket(settings) as store:
            return await apply_lifecycle(store, policy)

    for change in asyncio.run(run()):
        print(change.line())
    return 0


def cmd_storage_protect(settings: Settings, args: argparse.Namespace) -> int:
    from storage.s3_admin import open_bucket, protect_bucket

    async def run() -> list[Any]:
        async with open_bucket(settings) as store:
            return await protect_bucket(
                store,
                replica_bucket=args.replica_bucket,
                replication_role=args.replication_role,
                replica_storage_class=args.replica_storage_class,
            )

    for change in asyncio.run(run()):
        print(change.line())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ideinstein: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log_level, json=settings.log_format is LogFormat.JSON)
    try:
        result: int = args.func(settings, args)
    except AppError as exc:
        print(f"ideinstein: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"ideinstein: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
