"""The `cf-access-bot` console script."""

from __future__ import annotations

import argparse
import gc
import html
import json
import logging
import sys
import tomllib
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from bot.core.config import (
    ConfigError,
    Settings,
    database_problem,
    load_database_settings,
    load_settings,
    misspelled_variables,
    open_database,
)
from bot.ops.logs import configure_logging

log = logging.getLogger("cf_access_bot")


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.cloudflare_api_token,
        settings.cloudflare_api_key,
    ]
    return [value.get_secret_value() for value in values if value is not None]


def _configure(settings: Settings) -> None:
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=_secrets(settings))


def freeze_startup_objects() -> None:
    """Keep what start-up built (modules, mappers, models, the app) out of every later collection.

    Python's full collections scanned all of it with every thread stopped: 70-120 ms each here,
    every few seconds under load, and every ack in flight waited (p99 of Approve clicks at 16
    concurrent: 175 -> 79 ms). Objects made from now on are collected as before. Only for the
    long-running commands: frozen objects are never collected, which a test process making many
    bots would feel.
    """
    gc.collect()
    gc.freeze()


def cmd_serve(_args: argparse.Namespace) -> int:
    import uvicorn

    from bot.ops.runtime import Runtime

    settings = load_settings(require=("slack_signing_secret",))
    _configure(settings)
    # Acks must not wait long for the GIL behind post-ack work: switch threads more often (default 5 ms).
    sys.setswitchinterval(0.001)
    runtime = Runtime.start(settings, db=open_database(settings.database_url))
    web_app = runtime.web_app()
    freeze_startup_objects()
    log.info("serving Slack on http://%s:%s/slack/events", settings.host, settings.port)
    uvicorn.run(web_app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


def cmd_socket(_args: argparse.Namespace) -> int:
    from bot.ops.metrics import kind_of
    from bot.ops.runtime import Runtime
    from bot.ops.server import OpsListener
    from bot.ops.socket_mode import SocketModeRefused, SocketModeRunner

    settings = load_settings(require=("slack_app_token",))
    _configure(settings)
    sys.setswitchinterval(0.001)  # as in serve: acks must not wait long for the GIL
    runtime = Runtime.start(settings, socket_mode=True, db=open_database(settings.database_url))
    assert settings.slack_app_token is not None
    metrics = runtime.metrics
    runner = SocketModeRunner(
        runtime.bolt_app,
        settings.slack_app_token.get_secret_value(),
        on_ack=(lambda payload, seconds: metrics.observe_ack(kind_of(payload), seconds)) if metrics else None,
    )
    listener: OpsListener | None = None
    try:
        listener = OpsListener(runtime.ops_app(runner.link_state), settings.host, settings.port)
        listener.start()
        log.info("serving /healthz and /metrics on http://%s:%s", settings.host, listener.port)
        freeze_startup_objects()
        # Returns on SIGTERM/SIGINT once the envelopes in flight are acknowledged and the links closed;
        # runtime.stop() then finishes post-ack work and stops the scheduler, as serve's shutdown does.
        runner.run(on_connected=runtime.begin_background_work)
    except SocketModeRefused as refused:
        raise ConfigError(str(refused)) from None
    finally:
        if listener is not None:
            listener.stop()
        runtime.stop()
    log.info("stopped")
    return 0


def cmd_check(_args: argparse.Namespace) -> int:
    from bot.ops.checks import format_table, run_checks
    from bot.ops.wiring import build_services

    settings = load_settings()
    _configure(settings)
    services = build_services(settings, db=open_database(settings.database_url))
    try:
        results = run_checks(services)
    finally:
        services.close()
    print(format_table(results))
    return 0 if all(result.ok for result in results) else 1


def cmd_revoke(args: argparse.Namespace) -> int:
    """An operator's revoke: removes what the bot granted through request ID now, told in its thread."""
    from bot.access.grants import Grants
    from bot.ops.wiring import build_services
    from bot.slack.command_text import parse_request_id
    from storage.migrate import upgrade

    request_id = parse_request_id(args.id)
    if request_id is None:
        raise ConfigError(f"revoke: '{args.id}' is not a request number (e.g. 42 or #42)")
    settings = load_settings()
    _configure(settings)
    services = build_services(settings, db=open_database(settings.database_url, must_exist=True))
    try:
        upgrade(services.db.engine)
        outcome = Grants(services).revoke(request_id, None, args.reason)
        services.wait_idle()
    finally:
        services.close()
    print(html.unescape(outcome.message))  # Slack escaping is for Slack; a terminal shows the text
    return 0 if outcome.ok else 1


def cmd_requests(args: argparse.Namespace) -> int:
    from bot.ops.export import request_record, write_requests_table
    from storage.repository import iter_requests
    from storage.states import RequestStatus

    if args.status and args.status not in {s.value for s in RequestStatus}:
        raise ConfigError(f"--status must be one of {', '.join(s.value for s in RequestStatus)}")
    db = open_database(load_database_settings().database_url, must_exist=True)
    with db.session() as session:
        rows = iter_requests(session, status=args.status, account_id=args.account)
        if args.json:
            for request in rows:
                print(json.dumps(request_record(request), ensure_ascii=False))
        else:
            write_requests_table(rows, sys.stdout)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from bot.ops.export import write_audit
    from storage.repository import iter_audit

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--since: '{args.since}' is not an ISO-8601 time (e.g. 2026-01-31T00:00:00Z)") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    db = open_database(load_database_settings().database_url, must_exist=True)
    with db.session() as session:
        write_audit(iter_audit(session, since=since), sys.stdout, args.format)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The access review: every member of every requestable account (one member walk per account)."""
    from bot.ops.report_cli import run_report
    from bot.ops.wiring import build_services
    from storage.migrate import upgrade

    settings = load_settings()
    _configure(settings)
    services = build_services(settings, db=open_database(settings.database_url, must_exist=True))
    try:
        upgrade(services.db.engine)  # the review's counts are stored for the approvers' Home tab
        return run_report(services, account=args.account, fmt=args.format, out=sys.stdout, err=sys.stderr)
    finally:
        services.close()


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    upgrade(open_database(load_database_settings().database_url).engine)
    print("database schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cf-access-bot", description="Cloudflare account access, approved in Slack.")
    parser.add_argument("--version", action="version", version=f"cf-access-bot {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve Slack over HTTP (POST /slack/events, GET /healthz)").set_defaults(
        run=cmd_serve
    )
    commands.add_parser("socket", help="serve Slack over Socket Mode (SLACK_APP_TOKEN)").set_defaults(run=cmd_socket)
    commands.add_parser("check", help="verify Slack, Cloudflare, accounts, roles and approvers").set_defaults(
        run=cmd_check
    )
    revoke = commands.add_parser("revoke", help="remove the access granted through a request, now")
    revoke.add_argument("id", help="the request number, e.g. 42 or #42")
    revoke.add_argument("--reason", help="told to the holder and in the approvers' thread")
    revoke.set_defaults(run=cmd_revoke)
    requests = commands.add_parser("requests", help="list requests")
    requests.add_argument("--status")
    requests.add_argument("--account", help="account id")
    requests.add_argument("--json", action="store_true", help="one JSON object per line")
    requests.set_defaults(run=cmd_requests)
    audit = commands.add_parser("audit", help="export the audit log")
    audit.add_argument("--since", help="ISO-8601 time, inclusive")
    audit.add_argument("--format", choices=["json", "csv"], default="json")
    audit.set_defaults(run=cmd_audit)
    report = commands.add_parser("report", help="access review: every member of every requestable account")
    report.add_argument("--account", help="one account: id, name, or a unique start of its name")
    report.add_argument("--format", choices=["table", "json", "csv"], default="table")
    report.set_defaults(run=cmd_report)
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply schema migrations").set_defaults(run=cmd_db_upgrade)
    return parser


def _version() -> str:
    """The installed distribution's version; a bare checkout (PYTHONPATH) reads pyproject.toml."""
    try:
        return package_version("cf-access-bot")
    except PackageNotFoundError:
        pass
    try:
        pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
        return str(pyproject["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _database_url_or_none() -> str | None:
    try:
        return load_database_settings().database_url
    except ConfigError:
        return None


def _config_error(error: ConfigError) -> int:
    print(f"cf-access-bot: configuration error: {error}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for warning in misspelled_variables():
        print(f"cf-access-bot: warning: {warning}", file=sys.stderr)
    try:
        code: int = args.run(args)
        return code
    except ConfigError as error:
        return _config_error(error)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        # A database the command reached without `open_database` (one line, not a traceback).
        problem = database_problem(error, _database_url_or_none())
        if problem is None:
            raise
        return _config_error(problem)


if __name__ == "__main__":
    sys.exit(main())
