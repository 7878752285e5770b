"""Socket Mode for real: envelopes over a local WebSocket server playing Slack, acks within 3 s,
prompt reconnects (disconnect, dropped or silent TCP), graceful SIGTERM, and a refused app token."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from slack_bolt import Ack, App
from slack_sdk.web import WebClient

from bot.core.priority import FOREGROUND, LONGEST_PAUSE, mark_background
from bot.ops.socket_mode import SocketModeRefused, SocketModeRunner
from tests.conftest import ALICE, BOB, World
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.slack import FakeSlack, SlackFault
from tests.fakes.socket_mode import Ack as Acked
from tests.fakes.socket_mode import FakeSocketMode, Link
from tests.harness import BOT_TOKEN, SlackDriver
from tests.helpers import roots_of
from tests.process import bot_env, free_port
from tests.test_replicas import request_status, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def socket_mode(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    server = FakeSocketMode(fake_slack).start()
    yield server
    server.stop()


class SocketModeDriver(SlackDriver):
    """Sends what Slack sends (the harness's commands and clicks) as Socket Mode envelopes on `link`,
    and waits for the bot's ack, which Slack requires within 3 s."""

    def __init__(self, fake_slack: FakeSlack, socket_mode: FakeSocketMode) -> None:
        self.attach(fake_slack)
        self.socket_mode = socket_mode
        self.link: Link | None = None
        self.acks: list[Acked] = []
        #: Where the process serves /healthz and /metrics.
        self.ops_url = ""

    def signed_post(self, body: str, content_type: str, **_signing: Any) -> httpx.Response:
        assert self.link is not None
        form = dict(parse_qsl(body, keep_blank_values=True))
        # Socket Mode carries the same fields as HTTP mode, as JSON: the command's form, or the interaction's payload.
        kind, payload = ("interactive", json.loads(form["payload"])) if "payload" in form else ("slash_commands", form)
        acked = self.socket_mode.wait_ack(self.socket_mode.send_envelope(self.link, kind, payload))
        self.acks.append(acked)
        if "payload" in acked.message:
            return httpx.Response(200, json=acked.message["payload"])
        return httpx.Response(200)


# --- the real bot, as a process --------------------------------------------------------------------


def socket_env(fake_slack: FakeSlack, fake_cf: FakeCloudflare, database_url: str, **overrides: str) -> dict[str, str]:
    overrides = {"SLACK_APP_TOKEN": FakeSlack.app_token, "PORT": str(free_port()), **overrides}
    env = bot_env(fake_slack, fake_cf, database_url, **overrides)
    del env["SLACK_SIGNING_SECRET"]  # Socket Mode needs none
    return env


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


@contextlib.contextmanager
def socket_bot(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, database_url: str, socket_mode: FakeSocketMode, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], SocketModeDriver]]:
    """`python -m bot socket` as a real process, connected to the fake; killed if a test leaves it running."""
    env = socket_env(fake_slack, fake_cf, database_url)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "socket"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        driver = SocketModeDriver(fake_slack, socket_mode)
        driver.ops_url = f"http://127.0.0.1:{env['PORT']}"
        driver.link = socket_mode.wait_link(1, timeout=60)
        yield process, driver
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_socket_mode_end_to_end(
    fake_slack: FakeSlack,
    fake_cf: FakeCloudflare,
    world: World,
    database_url: str,
    socket_mode: FakeSocketMode,
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "socket.log"
    with socket_bot(fake_slack, fake_cf, database_url, socket_mode, log_path) as (process, driver):
        # A slash command: the usage text comes back in the ack's payload.
        reply = driver.command("help", user_id=ALICE)
        assert "/cf-access request" in reply.response.json()["text"]

        # A request, then an approver's button click (an `interactive` envelope): the invite goes out.
        reply = driver.command('request "Acme Production" DNS socket mode test', user_id=ALICE)
        wait_for(lambda: len(roots_of(fake_slack, 1)) == 2, what="the request to reach both approvers")
        wait_for(
            lambda: any("#1 filed" in r.get("text", "") for r in fake_slack.responses_for(reply.response_id)),
            what="Alice to be told her request was filed",
        )
        driver.click(roots_of(fake_slack, 1)[0], "request_approve", user_id=BOB)
        wait_for(lambda: request_status(database_url, 1) == "invited", what="the invite")
        wait_for(
            lambda: any(
                "Invite sent" in m.text
                for m in fake_slack.dms_to(ALICE) + fake_slack.thread(roots_of(fake_slack, 1)[0])
            ),
            what="Alice to be told",
        )
        assert all(acked.after < 3.0 for acked in driver.acks), [acked.after for acked in driver.acks]

        # Slack asks for a refresh: a new connection at once, the next envelope acked there, the old one closed.
        old = driver.link
        asked = time.monotonic()
        socket_mode.disconnect(old, "refresh_requested")
        driver.link = socket_mode.wait_link(2, timeout=3)
        reconnected_after = driver.link.opened_at - asked
        assert len(fake_slack.calls_to("apps.connections.open")) == 2
        driver.command("help", user_id=ALICE)
        assert driver.acks[-1].link == 2 and driver.acks[-1].after < 3.0
        socket_mode.wait_closed(old, timeout=10)
        assert old.close_code == 1000

        # The TCP connection drops with no close frame: noticed and replaced within seconds.
        dropped = time.monotonic()
        socket_mode.drop(driver.link)
        driver.link = socket_mode.wait_link(3, timeout=5)
        dropped_after = driver.link.opened_at - dropped
        driver.command("help", user_id=ALICE)
        assert driver.acks[-1].link == 3

        # Probes and scrapes: /healthz and /metrics on HOST:PORT, and no Slack route there.
        health = httpx.get(driver.ops_url + "/healthz")
        assert health.status_code == 200
        assert health.json() | {"busy_workers": 0} == {
            "status": "ok",
            "database": "ok",
            "slack": "connected",
            "busy_workers": 0,
        }
        # Each ack is observed just after it is sent: the last one may need a moment.
        wait_for(lambda: ack_count(httpx.get(driver.ops_url + "/metrics").text, "command") >= 4, what="4 acks")
        scrape = httpx.get(driver.ops_url + "/metrics").text
        assert ack_count(scrape, "block_actions") >= 1, scrape
        assert 'cf_access_requests{state="invited"} 1.0' in scrape
        assert httpx.post(driver.ops_url + "/slack/events", content=b"{}").status_code == 404

        # Connected and idle, the process uses next to no CPU (no polling loops).
        before = cpu_seconds(process.pid)
        time.sleep(3.0)
        idle_cpu = cpu_seconds(process.pid) - before
        assert idle_cpu < 0.3, f"idle process used {idle_cpu:.2f} s of CPU in 3 s"

        # SIGTERM: the connection is closed cleanly and the process exits 0.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        socket_mode.wait_closed(driver.link, timeout=5)
        assert driver.link.close_code == 1000
        output = log_path.read_text()
        assert "SIGTERM received" in output and "Socket Mode connection closed" in output
        assert output.rstrip().endswith("stopped"), output[-2000:]
        assert "Traceback" not in output, output
        print(
            f"disconnect->hello {reconnected_after * 1000:.0f} ms; drop->hello {dropped_after * 1000:.0f} ms; "
            f"idle CPU {idle_cpu:.3f} s in 3 s"
        )


def ack_count(scrape: str, kind: str) -> float:
    """How many acks of `kind` the scrape's ack histogram counted."""
    prefix = f'cf_access_ack_seconds_count{{kind="{kind}"}} '
    return sum(float(line.removeprefix(prefix)) for line in scrape.splitlines() if line.startswith(prefix))


def test_a_taken_port_is_one_line_naming_it(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, database_url: str, socket_mode: FakeSocketMode
) -> None:
    """Socket Mode listens on HOST:PORT for /healthz and /metrics only: a port in use stops the start
    with a clear error (exit 2), before any connection to Slack."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = socket_env(fake_slack, fake_cf, database_url, PORT=str(port), LOG_LEVEL="WARNING")
        result = subprocess.run(
            [sys.executable, "-m", "bot", "socket"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot listen on 127.0.0.1:{port} for /healthz and /metrics" in result.stderr
    assert socket_mode.links == []


def test_sigterm_lets_work_in_flight_finish(
    fake_slack: FakeSlack,
    fake_cf: FakeCloudflare,
    world: World,
    database_url: str,
    socket_mode: FakeSocketMode,
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "socket.log"
    with socket_bot(fake_slack, fake_cf, database_url, socket_mode, log_path) as (process, driver):
        # Slack is slow to take the approval posts: they are still in flight when SIGTERM arrives.
        fake_slack.inject(SlackFault("chat.postMessage", retry_after=1, delay=0.5))
        driver.command('request "Acme Production" DNS socket mode test', user_id=ALICE)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        assert len(roots_of(fake_slack, 1)) == 2, "the approvers' messages were lost at shutdown"
        socket_mode.wait_closed(driver.link, timeout=5)
        assert driver.link.close_code == 1000


def test_a_refused_app_token_is_one_line_naming_it(
    fake_slack: FakeSlack, fake_cf: FakeCloudflare, database_url: str, socket_mode: FakeSocketMode, tmp_path: Path
) -> None:
    env = socket_env(
        fake_slack, fake_cf, database_url, SLACK_APP_TOKEN="xapp-1-A0CFACCESS-1-revoked-0000", LOG_LEVEL="WARNING"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "socket"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    named = [line for line in result.stderr.splitlines() if "SLACK_APP_TOKEN" in line]
    assert len(named) == 1 and "Traceback" not in result.stderr, result.stderr
    assert named[0].startswith(
        "cf-access-bot: configuration error: SLACK_APP_TOKEN was refused by Slack (invalid_auth)"
    )
    assert "xapp-1-A0CFACCESS-1-revoked-0000" not in result.stderr
    assert socket_mode.links == []


# --- the runner in this process, with a tiny app whose acks can be made slow -------------------------


def echo_app(fake_slack: FakeSlack) -> App:
    app = App(
        client=WebClient(token=BOT_TOKEN, base_url=fake_slack.url + "/api/"),
        signing_secret="unused-in-socket-mode",
        request_verification_enabled=False,
        token_verification_enabled=False,
    )

    @app.command("/echo")
    def echo(ack: Ack, command: dict[str, Any]) -> None:
        time.sleep(float(command["text"] or 0))  # work before the ack, still in flight meanwhile
        ack(f"echo {command['text']}")

    return app


class Running:
    """A SocketModeRunner on a thread (signals are the process test's business)."""

    def __init__(self, runner: SocketModeRunner) -> None:
        self.runner = runner
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run(on_connected=self.connected.set)
        except BaseException as error:
            self.error = error

    def stop(self, timeout: float = 10.0) -> None:
        self.runner.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the runner did not stop"


@pytest.fixture
def run_echo(fake_slack: FakeSlack, socket_mode: FakeSocketMode) -> Iterator[Any]:
    started: list[Running] = []

    def start(token: str = FakeSlack.app_token, **options: Any) -> Running:
        running = Running(SocketModeRunner(echo_app(fake_slack), token, **options))
        running.thread.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def echo(socket_mode: FakeSocketMode, link: Link, text: str) -> str:
    return socket_mode.send_envelope(link, "slash_commands", {"command": "/echo", "text": text, "user_id": ALICE})


def test_disconnect_opens_a_new_link_at_once_while_work_is_in_flight(
    socket_mode: FakeSocketMode, run_echo: Any
) -> None:
    run_echo()
    first = socket_mode.wait_link(1)
    slow = echo(socket_mode, first, "1.0")
    time.sleep(0.1)  # the slow envelope is being handled
    asked = time.monotonic()
    socket_mode.disconnect(first, "warning")
    second = socket_mode.wait_link(2, timeout=3)
    assert second.opened_at - asked < 1.0
    quick = socket_mode.wait_ack(echo(socket_mode, second, ""))
    assert quick.link == 2 and quick.after < 1.0 and quick.message["payload"] == {"text": "echo "}
    # The envelope that was in flight is still acknowledged; only then is the old link closed, cleanly.
    assert socket_mode.wait_ack(slow).message == {"envelope_id": slow, "payload": {"text": "echo 1.0"}}
    socket_mode.wait_closed(first, timeout=5)
    assert first.close_code == 1000 and second.closed_at is None


@pytest.mark.parametrize("fault", ["drop", "silence"])
def test_a_lost_connection_is_replaced_within_seconds(socket_mode: FakeSocketMode, run_echo: Any, fault: str) -> None:
    running = run_echo(ping_interval=0.5, ping_timeout=0.5, close_timeout=0.5)
    first = socket_mode.wait_link(1)
    assert running.connected.wait(5)
    lost = time.monotonic()
    getattr(socket_mode, fault)(first)
    second = socket_mode.wait_link(2, timeout=5)
    # An abrupt close is seen at once; a silent peer within ping_interval + ping_timeout + close_timeout.
    assert second.opened_at - lost < (1.0 if fault == "drop" else 3.0)
    assert socket_mode.wait_ack(echo(socket_mode, second, "")).link == 2


def test_reconnecting_backs_off_while_slack_is_unavailable(
    fake_slack: FakeSlack, socket_mode: FakeSocketMode, run_echo: Any
) -> None:
    """And /healthz says so meanwhile: `slack` reads `connecting` until a new link is greeted."""
    acked: list[tuple[dict[str, Any], float]] = []
    running = run_echo(retry_delays=(0.3,), on_ack=lambda payload, seconds: acked.append((payload, seconds)))
    first = socket_mode.wait_link(1)
    assert running.connected.wait(5) and running.runner.link_state() == "connected"
    fake_slack.inject(SlackFault("apps.connections.open", status=500, error="internal_error", times=2))
    socket_mode.drop(first)
    wait_for(lambda: running.runner.link_state() == "connecting", what="the lost link to show", timeout=5)
    second = socket_mode.wait_link(2, timeout=5)
    assert socket_mode.wait_ack(echo(socket_mode, second, "")).link == 2
    assert len(fake_slack.calls_to("apps.connections.open")) >= 4  # first, the failures, the success
    assert running.runner.link_state() == "connected"
    wait_for(lambda: bool(acked), what="the ack to be observed", timeout=5)  # just after it was sent
    [(payload, seconds)] = acked  # the ack latency metric's observation
    assert payload["command"] == "/echo" and 0 < seconds < 3


def test_background_work_steps_aside_while_an_envelope_is_being_answered(
    socket_mode: FakeSocketMode, run_echo: Any
) -> None:
    """As in HTTP mode: the work pools wait at their I/O points until the envelopes in flight are acked."""

    def background_pause() -> float:
        took: list[float] = []

        def step() -> None:
            mark_background()
            started = time.monotonic()
            FOREGROUND.step_aside()
            took.append(time.monotonic() - started)

        thread = threading.Thread(target=step)
        thread.start()
        thread.join(5)
        return took[0]

    run_echo()
    link = socket_mode.wait_link(1)
    socket_mode.wait_ack(echo(socket_mode, link, ""))
    assert background_pause() < LONGEST_PAUSE / 2, "nothing in flight: no pause"
    slow = echo(socket_mode, link, "0.6")
    time.sleep(0.1)  # the slow envelope is being handled
    assert background_pause() >= LONGEST_PAUSE * 0.9, "an envelope in flight: background work steps aside"
    socket_mode.wait_ack(slow)
    assert background_pause() < LONGEST_PAUSE / 2


def test_stop_acknowledges_envelopes_in_flight_then_closes(socket_mode: FakeSocketMode, run_echo: Any) -> None:
    running = run_echo()
    link = socket_mode.wait_link(1)
    slow = echo(socket_mode, link, "0.5")
    time.sleep(0.1)
    running.stop()
    assert socket_mode.acks[slow].message["payload"] == {"text": "echo 0.5"}
    socket_mode.wait_closed(link, timeout=5)
    assert link.close_code == 1000 and running.error is None


def test_a_bot_token_in_place_of_the_app_token_is_refused(socket_mode: FakeSocketMode, run_echo: Any) -> None:
    running = run_echo(BOT_TOKEN)
    running.thread.join(10)
    assert isinstance(running.error, SocketModeRefused)
    assert str(running.error).startswith("SLACK_APP_TOKEN was refused by Slack (not_allowed_token_type)")
    assert socket_mode.links == [] and not running.connected.is_set()


def test_a_peer_that_keeps_dropping_the_link_gets_backoff_not_a_loop(
    socket_mode: FakeSocketMode, run_echo: Any
) -> None:
    run_echo(retry_delays=(0.5,))
    first = socket_mode.wait_link(1)
    socket_mode.drop(first)
    second = socket_mode.wait_link(2, timeout=3)  # the first retry is immediate
    assert second.opened_at - first.opened_at < 1.0
    socket_mode.drop(second)  # died young again: now the bot waits
    third = socket_mode.wait_link(3, timeout=3)
    assert third.opened_at - second.opened_at >= 0.4
    assert socket_mode.wait_ack(echo(socket_mode, third, "")).link == 3
