"""Time-bound access, extensions, the end, revocation and offboarding (issue 13)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.http_retry import FixedValueRetryIntervalCalculator

from bot.ops.scheduler import Sweeper
from tests.conftest import ALICE, BOB, MALLORY, PG_IDS, BotFactory, World
from tests.fakes.cloudflare import FakeCloudflare, Fault
from tests.fakes.slack import FakeSlack, Message, SlackFault
from tests.harness import BotUnderTest
from tests.helpers import answer, audit_names, file_request, roots_of, stored, texts
from tests.test_cli import cli

ACME_DNS_3D = 'request "Acme Production" DNS for 3d rotating records'


def sweep(bot: BotUnderTest) -> None:
    report = Sweeper(bot.services).run_once()
    assert report.errors == []


def alice_members(fake_cf: FakeCloudflare, world: World) -> list[dict[str, Any]]:
    return fake_cf.members_with_email(world.acme, "alice@example.com")


def approved_for(bot: BotUnderTest, fake_slack: FakeSlack, text: str = ACME_DNS_3D, **click: Any) -> int:
    request_id = file_request(bot, fake_slack, ALICE, text)
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB, **click)
    assert stored(bot, request_id).status == "invited"
    return request_id


def writes(fake_cf: FakeCloudflare) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in fake_cf.calls if c.method in ("POST", "PUT", "DELETE")]


def submit_form(bot: BotUnderTest, fake_slack: FakeSlack, values: dict[str, Any], user_id: str) -> None:
    form = fake_slack.views[max(fake_slack.views)]
    assert bot.submit_view(form, values, user_id=user_id).status_code == 200


def reason_value(block: str, action: str, text: str) -> dict[str, Any]:
    return {block: {action: {"type": "plain_text_input", "value": text}}}


def test_a_quick_request_for_a_duration_is_shown_and_sets_the_end(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE, ACME_DNS_3D)
    root = roots_of(fake_slack, request_id)[0]
    assert "*Access for*\\n3d" in json.dumps(root.blocks)
    select = next(
        b["accessory"] for b in root.blocks if (b.get("accessory") or {}).get("action_id") == "grant_duration"
    )
    assert select["initial_option"]["value"] == str(3 * 86400), "preset to the requested duration"
    approved_at = bot.clock.now()
    bot.click(root, "request_approve", user_id=BOB)
    request = stored(bot, request_id)
    assert request.access_ends_at == approved_at + timedelta(days=3)
    assert "until" in roots_of(fake_slack, request_id)[0].all_text()
    assert "until" in answer(bot, fake_slack, "status", ALICE)


def test_an_unusual_requested_duration_is_among_the_approvers_choices_and_can_be_shortened(
    bot: BotUnderTest, fake_slack: FakeSlack, world: World
) -> None:
    unusual = file_request(bot, fake_slack, ALICE, 'request "Acme Production" DNS for 5h quick fix')
    root = roots_of(fake_slack, unusual)[0]
    select = next(
        b["accessory"] for b in root.blocks if (b.get("accessory") or {}).get("action_id") == "grant_duration"
    )
    assert select["initial_option"]["value"] == str(5 * 3600), "an unusual duration is among the options"
    answer(bot, fake_slack, f"cancel {unusual}", ALICE)
    request_id = file_request(bot, fake_slack, ALICE, ACME_DNS_3D)
    approved_at = bot.clock.now()
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB, granted_duration=str(8 * 3600))
    assert stored(bot, request_id).access_ends_at == approved_at + timedelta(hours=8), "shortened to 8h"


def test_max_access_duration_bounds_every_grant(make_bot: BotFactory, fake_slack: FakeSlack, world: World) -> None:
    bot = make_bot(max_access_duration="1w")
    said = answer(bot, fake_slack, 'request "Acme Production" DNS for 2w long project', ALICE)
    assert "longer than the longest grant allowed here (7d)" in said and "Nothing was filed" in said
    request_id = file_request(bot, fake_slack, ALICE, 'request "Acme Production" DNS no duration named')
    assert stored(bot, request_id).requested_duration_s == 7 * 86400, "with a maximum, nothing is permanent"
    root = roots_of(fake_slack, request_id)[0]
    options = next(
        b["accessory"]["options"]
        for b in root.blocks
        if (b.get("accessory") or {}).get("action_id") == "grant_duration"
    )
    assert "permanent" not in [o["value"] for o in options]
    assert max(int(o["value"]) for o in options) == 7 * 86400


def test_a_grant_is_warned_extended_then_ended_with_the_member_removed(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    bot = make_bot()
    request_id = approved_for(bot, fake_slack)
    fake_cf.accept(world.acme, stored(bot, request_id).cloudflare_member_id or "")
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, request_id).status == "accepted"
    first_end = stored(bot, request_id).access_ends_at
    assert first_end is not None

    bot.clock.advance(timedelta(days=2, hours=1))  # 23 h before the end: within ACCESS_END_WARNING
    sweep(bot)
    warning = next(m for m in fake_slack.dms_to(ALICE) if "request_extension" in m.action_ids())
    assert "ends" in warning.text and "end_warning_sent" in audit_names(bot, request_id)
    sweep(bot)
    assert len([m for m in fake_slack.dms_to(ALICE) if "request_extension" in m.action_ids()]) == 1, "warned once"

    writes_before = writes(fake_cf)
    bot.click(warning, "request_extension", user_id=ALICE)
    form = fake_slack.views[max(fake_slack.views)]
    assert form["callback_id"] == "cf_access_extend" and form["submit"]["text"] == "Request"
    week = next(o for o in form["blocks"][1]["element"]["options"] if o["value"] == str(7 * 86400))
    values = {
        "duration": {"duration_select": {"type": "static_select", "selected_option": week}},
        **reason_value("reason", "reason_input", "the migration took longer"),
    }
    submit_form(bot, fake_slack, values, ALICE)
    extension_id = request_id + 1
    extension_root = roots_of(fake_slack, extension_id)[0]
    assert f"extends #{request_id}" in extension_root.all_text()
    bot.click(extension_root, "request_approve", user_id=BOB)
    original = stored(bot, request_id)
    assert original.access_ends_at == first_end + timedelta(days=7)
    assert stored(bot, extension_id).status == "accepted"
    assert "access_extended" in audit_names(bot, request_id)
    assert writes(fake_cf) == writes_before, "an extension writes nothing to Cloudflare"
    assert "now lasts until" in texts(fake_slack.dms_to(ALICE))

    bot.clock.advance(timedelta(days=1))  # the first end passes: still held
    sweep(bot)
    assert stored(bot, request_id).status == "accepted" and alice_members(fake_cf, world)
    bot.clock.advance(timedelta(days=7))
    sweep(bot)
    assert stored(bot, request_id).status == "ended"
    assert alice_members(fake_cf, world) == [], "the member the bot created was removed"
    assert ("DELETE", f"/accounts/{world.acme}/members/{original.cloudflare_member_id}") in writes(fake_cf)
    assert "reached its end" in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))
    assert "has ended" in texts(fake_slack.dms_to(ALICE))
    assert audit_names(bot, request_id)[-1] == "access_ended"


def test_a_membership_the_bot_did_not_create_is_left_in_place_at_the_end(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = file_request(bot, fake_slack, ALICE, ACME_DNS_3D)
    fake_cf.add_member(world.acme, "alice@example.com", ["069fe803647ed3609e93d041d5df6050"], status="pending")
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB)
    bot.clock.advance(timedelta(days=3, minutes=1))
    sweep(bot)
    assert stored(bot, request_id).status == "ended"
    assert not [w for w in writes(fake_cf) if w[0] == "DELETE"] and alice_members(fake_cf, world)
    assert "left it in place" in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))


def revoke_button(fake_slack: FakeSlack, request_id: int) -> Message:
    root = roots_of(fake_slack, request_id)[0]
    assert "revoke_access" in root.action_ids()
    return root


def test_revoke_by_button_is_for_approvers_only(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = approved_for(bot, fake_slack)
    bot.click(revoke_button(fake_slack, request_id), "revoke_access", user_id=MALLORY)
    submit_form(bot, fake_slack, reason_value("revoke_reason", "revoke_reason_input", "because"), MALLORY)
    assert stored(bot, request_id).status == "invited" and alice_members(fake_cf, world)
    told = [e.text for e in fake_slack.ephemerals_to(MALLORY)] + [m.text for m in fake_slack.dms_to(MALLORY)]
    assert any("not allowed to revoke" in text for text in told), told

    bot.click(revoke_button(fake_slack, request_id), "revoke_access", user_id=BOB)
    submit_form(bot, fake_slack, reason_value("revoke_reason", "revoke_reason_input", "project cancelled"), BOB)
    assert stored(bot, request_id).status == "revoked"
    assert alice_members(fake_cf, world) == []
    assert "project cancelled" in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))
    assert "was revoked by" in texts(fake_slack.dms_to(ALICE))
    assert audit_names(bot, request_id)[-1] == "access_revoked"
    assert roots_of(fake_slack, request_id)[0].action_ids() == []


def test_revoke_from_the_cli(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str
) -> None:
    from tests.process import bot_env

    request_id = approved_for(bot, fake_slack)
    import subprocess
    import sys

    from tests.test_cli import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "bot", "revoke", f"#{request_id}", "--reason", "left the team"],
        cwd=ROOT,
        env=bot_env(fake_slack, fake_cf, database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "removed" in result.stdout
    assert stored(bot, request_id).status == "revoked" and alice_members(fake_cf, world) == []
    assert "left the team" in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))
    again = cli(database_url, "revoke", str(request_id))
    assert again.returncode != 0


def user_change(bot: BotUnderTest, user_id: str, event_id: str) -> None:
    envelope = {
        "token": "legacy-verification-token",
        "team_id": "T0TEAM0001",
        "api_app_id": "A0CFACCESS",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {
            "type": "user_change",
            "user": {"id": user_id, "team_id": "T0TEAM0001", "name": "alice", "deleted": True, "profile": {}},
            "cache_ts": int(time.time()),
            "event_ts": f"{time.time():.6f}",
        },
    }
    response = bot.signed_post(json.dumps(envelope), "application/json")
    assert response.status_code == 200
    bot.wait_idle()


def test_offboarding_by_event_revokes_grants_and_cancels_pending_requests(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    granted = approved_for(bot, fake_slack)
    pending = file_request(bot, fake_slack, ALICE, 'request "Acme Staging" DNS staging too')
    outside = fake_cf.add_member(world.orange, "alice@example.com", ["069fe803647ed3609e93d041d5df6050"])
    fake_slack.users[ALICE].deleted = True
    user_change(bot, ALICE, "Ev0OFFBOARD1")
    user_change(bot, ALICE, "Ev0OFFBOARD1")  # Slack's retry: handled once
    assert stored(bot, granted).status == "revoked" and alice_members(fake_cf, world) == []
    assert stored(bot, pending).status == "cancelled"
    assert "deactivated in Slack" in texts(fake_slack.thread(roots_of(fake_slack, granted)[0]))
    assert "deactivated in Slack" in texts(fake_slack.thread(roots_of(fake_slack, pending)[0]))
    assert audit_names(bot, granted)[-1] == "offboarded"
    assert outside in fake_cf.accounts[world.orange]["members"], "access the bot did not grant is left alone"
    assert len([w for w in writes(fake_cf) if w[0] == "DELETE"]) == 1


def test_offboarding_by_the_periodic_recheck(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    granted = approved_for(bot, fake_slack, 'request "Acme Production" DNS permanent access please')
    fake_slack.users[ALICE].deleted = True
    infos_before = len([c for c in fake_slack.calls_to("users.info") if c.get("user") == ALICE])
    bot.clock.advance(timedelta(hours=23))
    sweep(bot)
    assert stored(bot, granted).status == "invited", "not re-checked before OFFBOARDING_CHECK_INTERVAL"
    bot.clock.advance(timedelta(hours=1, minutes=1))
    sweep(bot)
    sweep(bot)
    assert stored(bot, granted).status == "revoked" and alice_members(fake_cf, world) == []
    infos = len([c for c in fake_slack.calls_to("users.info") if c.get("user") == ALICE]) - infos_before
    assert infos == 1, "one users.info per holder per interval"


@pytest.mark.parametrize("failure", ["no answer", "refused"])
def test_a_recheck_slack_does_not_answer_is_asked_again_soon(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, failure: str
) -> None:
    """The periodic check meets a Slack that closes the connection on users.info (and its retries),
    or refuses it with an error other than "no such user": the sweep goes on, and the holder is
    asked again minutes later, not a whole interval later."""
    granted = approved_for(bot, fake_slack, 'request "Acme Production" DNS permanent access please')
    fake_slack.users[ALICE].deleted = True
    for handler in bot.services.slack.client.retry_handlers:  # retried at once: no real backoff sleeps
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0)
    dropped = SlackFault("users.info", drop=True, times=3)
    fake_slack.inject(dropped if failure == "no answer" else SlackFault("users.info", status=200, error="fatal_error"))
    bot.clock.advance(timedelta(hours=24, minutes=1))
    sweep(bot)
    assert stored(bot, granted).status == "invited" and not fake_slack.faults, "asked, with no answer"
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, granted).status == "revoked" and alice_members(fake_cf, world) == []


def test_two_replicas_end_the_same_grant_once(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    first, second = make_bot(), make_bot()
    request_id = approved_for(first, fake_slack)
    fake_cf.inject(Fault("DELETE", r"/members/", status=200, delay=0.3, after_effect=True))
    for replica in (first, second):
        replica.clock.advance(timedelta(days=3, minutes=1))
    threads = [threading.Thread(target=lambda r=replica: Sweeper(r.services).run_once()) for replica in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert stored(first, request_id).status == "ended"
    assert len([w for w in writes(fake_cf) if w[0] == "DELETE"]) == 1
    assert audit_names(first, request_id).count("access_ended") == 1


def test_a_crash_between_the_delete_and_the_state_change_is_resumed_harmlessly(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = approved_for(bot, fake_slack)
    # The member is deleted, but the answer never comes back (as if the process died right then).
    fake_cf.inject(Fault("DELETE", r"/members/", drop=True, after_effect=True))
    bot.clock.advance(timedelta(days=3, minutes=1))
    sweep(bot)
    assert stored(bot, request_id).status == "invited" and alice_members(fake_cf, world) == []
    bot.clock.advance(timedelta(minutes=5))
    sweep(bot)
    assert stored(bot, request_id).status == "ended"
    deletes = [w for w in writes(fake_cf) if w[0] == "DELETE"]
    assert len(deletes) == 2, "the retry's DELETE finds nothing (404) and the grant is closed"
    assert audit_names(bot, request_id).count("access_ended") == 1


def test_a_removal_cloudflare_refuses_is_retried_and_reported_once(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    request_id = approved_for(bot, fake_slack)
    body = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}
    fake_cf.inject(Fault("DELETE", r"/members/", status=403, body=body, times=2))
    bot.clock.advance(timedelta(days=3, minutes=1))
    sweep(bot)
    bot.clock.advance(timedelta(minutes=3))
    sweep(bot)
    assert stored(bot, request_id).status == "invited" and alice_members(fake_cf, world)
    thread = fake_slack.thread(roots_of(fake_slack, request_id)[0])
    assert len([m for m in thread if "Cloudflare refused to remove" in m.text]) == 1, "reported once"
    bot.clock.advance(timedelta(minutes=5))
    sweep(bot)
    assert stored(bot, request_id).status == "ended" and alice_members(fake_cf, world) == []


def test_the_request_form_asks_for_how_long(make_bot: BotFactory, fake_slack: FakeSlack, world: World) -> None:
    from tests.test_modal import form_values, open_modal, select_account

    bot = make_bot(default_access_duration="1d", max_access_duration="2w")
    view = select_account(bot, fake_slack, open_modal(bot, fake_slack), world.acme)
    access_for = next(b for b in view["blocks"] if b.get("block_id") == "duration")
    options = [o["value"] for o in access_for["element"]["options"]]
    assert access_for["element"]["initial_option"]["value"] == str(86400), "preset to DEFAULT_ACCESS_DURATION"
    assert "permanent" not in options and max(int(v) for v in options) == 14 * 86400
    eight_hours = next(o for o in access_for["element"]["options"] if o["value"] == str(8 * 3600))
    values = form_values(world.acme, [PG_IDS["dns"]], "a quick fix")
    values["duration"] = {"duration_select": {"type": "static_select", "selected_option": eight_hours}}
    assert bot.submit_view(view, values, user_id=ALICE).text == ""
    assert stored(bot, 1).requested_duration_s == 8 * 3600


def test_ending_a_grant_whose_member_carries_a_later_grant_takes_back_only_its_own_part(
    bot: BotUnderTest, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    """The bot created Alice's member for DNS (3 days); later it added Billing (permanent) to it.
    The end of DNS must not delete the member and with it the Billing grant."""
    first = approved_for(bot, fake_slack)
    member_id = stored(bot, first).cloudflare_member_id or ""
    fake_cf.accept(world.acme, member_id)
    bot.clock.advance(timedelta(minutes=6))
    sweep(bot)
    assert stored(bot, first).status == "accepted"
    second = file_request(bot, fake_slack, ALICE, 'request "Acme Production" Billing invoices')
    bot.click(roots_of(fake_slack, second)[0], "request_approve", user_id=BOB)
    assert stored(bot, second).member_added_to
    bot.clock.advance(timedelta(days=3, minutes=1))
    sweep(bot)
    assert stored(bot, first).status == "ended"
    assert not [w for w in writes(fake_cf) if w[0] == "DELETE"], "the shared member is not deleted"
    [member] = alice_members(fake_cf, world)
    names = {group["name"] for policy in member["policies"] for group in policy["permission_groups"]}
    assert "Billing" in names and "DNS" not in names
    assert stored(bot, second).status == "accepted"
