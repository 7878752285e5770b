"""Issue 12: roles or permission policies per account, zone-scoped grants, and access added to
existing members (SPEC §4, §5.1, §6, §11, §12), end to end against the fake Cloudflare."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest

from bot.access.home import build_home
from bot.ops.report_cli import run_report
from bot.ops.scheduler import Sweeper
from storage.models import AccessRequest
from tests.conftest import ALICE, BOB, CAROL, ROLE_IDS, BotFactory, World
from tests.fakes.cloudflare import (
    PG_ADMIN,
    PG_BILLING,
    PG_DNS,
    PG_DOMAIN_ADMIN,
    PG_DOMAIN_DNS,
    PG_SUPER_ADMIN,
    FakeCloudflare,
    Fault,
)
from tests.fakes.slack import FakeSlack
from tests.harness import BotUnderTest
from tests.helpers import answer, audit_events, audit_names, file_request, roots_of, stored, texts
from tests.test_cli import cli
from tests.test_modal import open_modal, select_account

ENGINEER = "U0ENGINE01"  # engineer7@example.com: a member of Acme Production with DNS (world fixture)


def policies_bot(make_bot: BotFactory, **overrides: Any) -> BotUnderTest:
    return make_bot(cloudflare_access_model="auto", **overrides)


def writes(fake_cf: FakeCloudflare) -> list[tuple[str, str, Any]]:
    """Every body the bot sent Cloudflare, in order (what the issue's note shows)."""
    return [(c.method, c.path, c.body) for c in fake_cf.calls if c.method in ("POST", "PUT", "DELETE")]


def approve(bot: BotUnderTest, fake_slack: FakeSlack, request_id: int, **click: Any) -> None:
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=BOB, **click)


def account_wide(fake_cf: FakeCloudflare, account_id: str) -> str:
    return str(fake_cf.account_wide_group(account_id)["id"])


def policy(permission_group_ids: list[str], resource_group_id: str) -> dict[str, Any]:
    return {
        "access": "allow",
        "permission_groups": [{"id": group_id} for group_id in permission_group_ids],
        "resource_groups": [{"id": resource_group_id}],
    }


def held_groups(member: dict[str, Any]) -> set[tuple[str, str]]:
    """(permission group id, resource group id) of every allow policy piece the member holds."""
    return {
        (group["id"], resource["id"])
        for held in member["policies"]
        if held["access"] == "allow"
        for group in held["permission_groups"]
        for resource in held["resource_groups"]
    }


def requests_stored(bot: BotUnderTest) -> int:
    with bot.db.session() as session:
        return session.query(AccessRequest).count()


# --- the model, per account ----------------------------------------------------------------------


def test_roles_lists_permission_groups_with_label_scope_and_description(
    make_bot: BotFactory, fake_slack: FakeSlack, world: World
) -> None:
    bot = policies_bot(make_bot)
    said = answer(bot, fake_slack, 'roles "Acme Production"', ALICE)
    assert "Requestable permission groups on Acme Production" in said
    assert "*Domain DNS* (`domain_dns`, zones only): Can edit the zone's DNS records." in said
    assert "*Administrator Read Only* (`admin_readonly`): admin_readonly" in said, "no description: the label"
    assert "Super Administrator" not in said and "Cache Purge" not in said


def test_policies_invite_is_one_allow_policy_on_the_account_wide_group(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    bot = policies_bot(make_bot)
    request_id = file_request(bot, fake_slack, ALICE, 'request "Acme Production" admin deploy the new worker')
    request = stored(bot, request_id)
    assert (request.access_model, request.requested_role_ids) == ("policies", [PG_ADMIN["id"]]), "`admin` is a label"
    root = roots_of(fake_slack, request_id)[0]
    assert "*Scope*\\nwhole account" in json.dumps(root.blocks)
    approve(bot, fake_slack, request_id)
    assert writes(fake_cf) == [
        (
            "POST",
            f"/accounts/{world.acme}/members",
            {"email": "alice@example.com", "policies": [policy([PG_ADMIN["id"]], account_wide(fake_cf, world.acme))]},
        )
    ]
    [member] = fake_cf.members_with_email(world.acme, "alice@example.com")
    assert [role["id"] for role in member["roles"]] == [ROLE_IDS["admin"]], "roles kept in step by Cloudflare"
    assert stored(bot, request_id).status == "invited"
    assert not fake_cf.calls_to("GET", r"/roles$"), "the policies model never reads the deprecated roles API"


def test_an_account_whose_only_super_admin_holds_it_by_policy(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    acme_ops = fake_cf.add_account("Acme Ops")
    boss = fake_cf.add_member(
        acme_ops, "bob@example.com", policies=[policy([PG_SUPER_ADMIN["id"]], account_wide(fake_cf, acme_ops))]
    )
    fake_cf.accounts[acme_ops]["members"][boss]["roles"] = []  # the right shows only as a policy
    fake_cf.add_member(acme_ops, "carol@example.com", [ROLE_IDS["admin"]])  # an Administrator: no approver
    bot = policies_bot(make_bot)
    request_id = file_request(bot, fake_slack, ALICE, 'request "Acme Ops" DNS records for the launch')
    [root] = roots_of(fake_slack, request_id)
    assert root.channel == fake_slack.dm_channel(BOB), "routed to the Super Admin by policy, and only to them"
    bot.click(root, "request_approve", user_id=CAROL)
    assert stored(bot, request_id).status == "pending", "an Administrator is no approver"
    approve(bot, fake_slack, request_id)
    assert stored(bot, request_id).status == "invited"


def test_auto_uses_roles_where_the_policies_api_does_not_answer(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_cf.without_policies_api(world.staging)
    bot = policies_bot(make_bot)
    said = answer(bot, fake_slack, 'roles "Acme Staging"', ALICE)
    assert "Requestable roles on Acme Staging" in said and "Cache Purge" in said
    refused = answer(bot, fake_slack, 'request "Acme Staging" DNS on example.com fix a record', ALICE)
    assert "managed with legacy roles" in refused and "Nothing was filed" in refused
    request_id = file_request(bot, fake_slack, ALICE, 'request "Acme Staging" DNS,Billing staging records')
    assert stored(bot, request_id).access_model == "roles"
    bot.click(roots_of(fake_slack, request_id)[0], "request_approve", user_id=CAROL)
    assert writes(fake_cf) == [
        (
            "POST",
            f"/accounts/{world.staging}/members",
            {"email": "alice@example.com", "roles": [ROLE_IDS["dns"], ROLE_IDS["billing"]]},
        )
    ]
    assert stored(bot, request_id).status == "invited"


def test_forced_roles_model_never_reads_permission_groups(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    bot = make_bot(cloudflare_access_model="roles")
    request_id = file_request(bot, fake_slack, ALICE)
    approve(bot, fake_slack, request_id)
    assert writes(fake_cf)[-1][2] == {"email": "alice@example.com", "roles": [ROLE_IDS["dns"]]}
    assert not fake_cf.calls_to("GET", r"/iam/")


# --- zones ---------------------------------------------------------------------------------------


def test_zone_grant_reuses_the_resource_group_with_exactly_those_zones(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, database_url: str
) -> None:
    zone = fake_cf.add_zone(world.acme, "example.com")
    other = fake_cf.add_zone(world.acme, "example.net")
    fake_cf.add_resource_group(world.acme, [zone, other], name="both")
    existing = fake_cf.add_resource_group(world.acme, [zone], name="just example.com")
    bot = policies_bot(make_bot)
    request_id = file_request(
        bot, fake_slack, ALICE, 'request "Acme Production" "Domain DNS" on example.com for 8h fix the MX'
    )
    request = stored(bot, request_id)
    assert (request.zone_ids, request.zone_names) == ([zone], ["example.com"])
    root = roots_of(fake_slack, request_id)[0]
    assert "*Scope*\\nzone example.com" in json.dumps(root.blocks)
    picker = next(b["accessory"] for b in root.blocks if (b.get("accessory") or {}).get("action_id") == "grant_roles")
    offered = {option["text"]["text"] for option in picker["options"]}
    assert "Domain DNS" in offered and "DNS" not in offered, "the approver's picker offers what fits zones"
    approve(bot, fake_slack, request_id)
    assert writes(fake_cf) == [
        (
            "POST",
            f"/accounts/{world.acme}/members",
            {"email": "alice@example.com", "policies": [policy([PG_DOMAIN_DNS["id"]], existing)]},
        )
    ], "no resource group created"
    assert stored(bot, request_id).resource_group_id == existing
    assert "on the zone example.com" in answer(bot, fake_slack, "status", ALICE)
    [record] = [json.loads(line) for line in cli(database_url, "requests", "--json").stdout.splitlines()]
    assert (record["scope"], record["access_model"]) == ("zone example.com", "policies")


def test_zone_grant_creates_the_resource_group_once_then_reuses_it(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    shop = fake_cf.add_zone(world.acme, "shop.example")
    blog = fake_cf.add_zone(world.acme, "blog.example")
    fake_cf.add_resource_group(world.acme, [shop], name="only the shop")  # not exactly the two: not reused
    bot = policies_bot(make_bot)
    request_id = file_request(
        bot, fake_slack, ALICE, 'request "Acme Production" "Domain Administrator" on shop.example,blog.example launch'
    )
    approve(bot, fake_slack, request_id)
    created = fake_cf.calls_to("POST", r"/iam/resource_groups$")
    assert [call.body for call in created] == [
        {
            "name": "cf-access-bot: blog.example, shop.example",
            "scope": {
                "key": f"com.cloudflare.api.account.{world.acme}",
                "objects": [{"key": f"com.cloudflare.api.account.zone.{zone_id}"} for zone_id in sorted([shop, blog])],
            },
        }
    ]
    group_id = stored(bot, request_id).resource_group_id
    assert group_id and group_id in {group["id"] for group in fake_cf.resource_groups(world.acme)}
    assert writes(fake_cf)[-1][2] == {
        "email": "alice@example.com",
        "policies": [policy([PG_DOMAIN_ADMIN["id"]], group_id)],
    }
    fake_slack.add_user("U0FRANK001", "frank@example.com", "frank")
    second = file_request(
        bot, fake_slack, "U0FRANK001", 'request "Acme Production" "Domain DNS" on blog.example,shop.example records'
    )
    approve(bot, fake_slack, second)
    assert len(fake_cf.calls_to("POST", r"/iam/resource_groups$")) == 1, "the created group is reused"
    assert stored(bot, second).resource_group_id == group_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"Domain DNS" on nope.example fix it', "Acme Production has no zone `nope.example`"),
        ('"Domain DNS" on shop.ex fix it', "`shop.ex` matches several zones of Acme Production"),
        ('"Domain DNS" on ' + ",".join(f"z{n}.example" for n in range(21)) + " all of them", "more than one grant"),
        ('"Cache Purge" purge the cache', "Cache Purge is a legacy role with no permission group"),
        ("DNS on shop.example records", "DNS cannot be scoped to zones"),
        ('"Domain DNS" records', "Domain DNS applies to zones only"),
        ("Domain on shop.example records", "`Domain` matches several permission groups"),
    ],
)
def test_bad_input_is_refused_clearly_and_stores_nothing(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World, text: str, expected: str
) -> None:
    fake_cf.add_zone(world.acme, "shop.example")
    fake_cf.add_zone(world.acme, "shop.example.net")
    bot = policies_bot(make_bot)
    said = answer(bot, fake_slack, f'request "Acme Production" {text}', ALICE)
    assert expected in said, said
    assert requests_stored(bot) == 0 and fake_slack.roots() == [] and writes(fake_cf) == []


def test_a_group_that_exists_only_as_a_permission_group_is_refused_in_the_roles_model(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    bot = make_bot(cloudflare_access_model="roles")
    said = answer(bot, fake_slack, 'request "Acme Production" "Domain DNS" records', ALICE)
    assert "Domain DNS is a permission group" in said and "legacy roles" in said
    assert requests_stored(bot) == 0


def test_cloudflare_1006_fails_the_invite_with_a_clear_message(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    # Cloudflare's view of a group's scope can differ from its `meta.scopes`: its 1006 answer is explained.
    fake_cf.add_zone(world.acme, "example.com")
    bot = policies_bot(make_bot)
    request_id = file_request(bot, fake_slack, ALICE, 'request "Acme Production" "Domain DNS" on example.com fix')
    group = next(g for g in fake_cf.accounts[world.acme]["permission_groups"] if g["id"] == PG_DOMAIN_DNS["id"])
    group["meta"]["scopes"] = "com.cloudflare.api.account"
    approve(bot, fake_slack, request_id)
    request = stored(bot, request_id)
    assert request.status == "failed" and "error 1006" in (request.invite_error or "")
    thread = texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))
    assert "cannot be granted on that scope" in thread
    assert fake_cf.members_with_email(world.acme, "alice@example.com") == [], "nothing was created"


# --- existing members ------------------------------------------------------------------------------


def test_a_member_gets_a_second_permission_group_without_losing_the_first(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_slack.add_user(ENGINEER, "engineer7@example.com", "engineer7")
    [member] = fake_cf.members_with_email(world.acme, "engineer7@example.com")
    wide = account_wide(fake_cf, world.acme)
    bot = policies_bot(make_bot)
    refused = answer(bot, fake_slack, 'request "Acme Production" DNS records again', ENGINEER)
    assert "already a member of Acme Production with DNS on the whole account" in refused
    request_id = file_request(bot, fake_slack, ENGINEER, 'request "Acme Production" Billing for 3d invoices')
    approve(bot, fake_slack, request_id)
    put = (
        "PUT",
        f"/accounts/{world.acme}/members/{member['id']}",
        {"policies": [policy([PG_DNS["id"]], wide), policy([PG_BILLING["id"]], wide)]},
    )
    assert writes(fake_cf) == [put], "a PUT with everything held plus the grant, no invite"
    assert held_groups(member) == {(PG_DNS["id"], wide), (PG_BILLING["id"], wide)}
    assert {role["id"] for role in member["roles"]} == {ROLE_IDS["dns"], ROLE_IDS["billing"]}
    request = stored(bot, request_id)
    assert request.status == "accepted" and request.member_added_to and not request.member_created_by_bot
    assert request.access_added == {
        "model": "policies",
        "ids": [PG_BILLING["id"]],
        "resource_group_id": wide,
        "member_id": member["id"],
    }
    assert audit_names(bot, request_id)[-1] == "access_added"
    assert audit_events(bot, request_id)[-1].details["access_added"]["ids"] == [PG_BILLING["id"]]
    assert "the bot added Billing on the whole account" in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))
    out = io.StringIO()
    assert run_report(bot.services, account=world.acme, fmt="json", out=out, err=io.StringIO()) == 0
    row = next(json.loads(line) for line in out.getvalue().splitlines() if "engineer7@" in line)
    assert row["access"] == ["DNS on account", "Billing on account"]
    assert row["granted_by"] == [f"#{request_id}", "outside"], "the report credits the bot with Billing only"

    bot.clock.advance(timedelta(days=3, minutes=1))
    assert Sweeper(bot.services).run_once().errors == []
    assert stored(bot, request_id).status == "ended"
    assert writes(fake_cf)[-1] == (
        "PUT",
        f"/accounts/{world.acme}/members/{member['id']}",
        {"policies": [policy([PG_DNS["id"]], wide)]},
    ), "the removal PUT takes back exactly the grant"
    assert held_groups(member) == {(PG_DNS["id"], wide)}
    assert fake_cf.members_with_email(world.acme, "engineer7@example.com"), "never deleted"
    assert not fake_cf.calls_to("DELETE", r"/members/")
    assert "the rest of it is unchanged" in texts(fake_slack.thread(roots_of(fake_slack, request_id)[0]))


def test_a_member_gets_zone_scoped_access_next_to_what_they_hold(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    zone = fake_cf.add_zone(world.acme, "example.com")
    fake_slack.add_user(ENGINEER, "engineer7@example.com", "engineer7")
    [member] = fake_cf.members_with_email(world.acme, "engineer7@example.com")
    wide = account_wide(fake_cf, world.acme)
    bot = policies_bot(make_bot)
    request_id = file_request(
        bot, fake_slack, ENGINEER, 'request "Acme Production" "Domain DNS" on example.com zone records'
    )
    approve(bot, fake_slack, request_id)
    [created] = [call.body for call in fake_cf.calls_to("POST", r"/iam/resource_groups$")]
    group_id = stored(bot, request_id).resource_group_id
    assert created["scope"]["objects"] == [{"key": f"com.cloudflare.api.account.zone.{zone}"}]
    assert fake_cf.calls_to("PUT", r"/members/")[-1].body == {
        "policies": [policy([PG_DNS["id"]], wide), policy([PG_DOMAIN_DNS["id"]], group_id)]
    }
    assert held_groups(member) == {(PG_DNS["id"], wide), (PG_DOMAIN_DNS["id"], group_id)}
    assert {role["id"] for role in member["roles"]} == {ROLE_IDS["dns"]}, "a zone policy has no legacy role"


def test_roles_model_adds_a_role_with_role_objects_and_revoke_takes_it_back(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_slack.add_user(ENGINEER, "engineer7@example.com", "engineer7")
    [member] = fake_cf.members_with_email(world.acme, "engineer7@example.com")
    bot = make_bot(cloudflare_access_model="roles")
    request_id = file_request(bot, fake_slack, ENGINEER, 'request "Acme Production" Billing invoices')
    approve(bot, fake_slack, request_id)
    path = f"/accounts/{world.acme}/members/{member['id']}"
    assert writes(fake_cf) == [("PUT", path, {"roles": [{"id": ROLE_IDS["dns"]}, {"id": ROLE_IDS["billing"]}]})]
    assert {role["name"] for role in member["roles"]} == {"DNS", "Billing"}
    assert stored(bot, request_id).access_added == {
        "model": "roles",
        "ids": [ROLE_IDS["billing"]],
        "member_id": member["id"],
    }
    root = roots_of(fake_slack, request_id)[0]
    bot.click(root, "revoke_access", user_id=BOB)
    form = fake_slack.views[max(fake_slack.views)]
    assert bot.submit_view(form, {}, user_id=BOB).status_code == 200
    assert stored(bot, request_id).status == "revoked"
    assert writes(fake_cf)[-1] == ("PUT", path, {"roles": [{"id": ROLE_IDS["dns"]}]})
    assert {role["id"] for role in member["roles"]} == {ROLE_IDS["dns"]}


def test_a_lost_put_answer_is_recognised_as_the_bots_own(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_slack.add_user(ENGINEER, "engineer7@example.com", "engineer7")
    [member] = fake_cf.members_with_email(world.acme, "engineer7@example.com")
    bot = policies_bot(make_bot)
    request_id = file_request(bot, fake_slack, ENGINEER, 'request "Acme Production" Billing invoices')
    fake_cf.inject(Fault("PUT", r"/members/", status=502, after_effect=True))
    approve(bot, fake_slack, request_id)
    request = stored(bot, request_id)
    assert request.status == "accepted" and request.member_added_to, "the retry adopts what the lost PUT added"
    assert (request.access_added or {}).get("ids") == [PG_BILLING["id"]]
    assert len(fake_cf.calls_to("PUT", rf"/members/{member['id']}$")) == 1


def test_a_member_holding_zone_policies_is_not_updated_by_roles(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    zone = fake_cf.add_zone(world.acme, "example.com")
    group = fake_cf.add_resource_group(world.acme, [zone])
    fake_slack.add_user(ENGINEER, "engineer7@example.com", "engineer7")
    [member] = fake_cf.members_with_email(world.acme, "engineer7@example.com")
    wide = account_wide(fake_cf, world.acme)
    fake_cf.set_member_policies(
        world.acme, member["id"], [policy([PG_DNS["id"]], wide), policy([PG_DOMAIN_DNS["id"]], group)]
    )
    bot = make_bot(cloudflare_access_model="roles")
    request_id = file_request(bot, fake_slack, ENGINEER, 'request "Acme Production" Billing invoices')
    approve(bot, fake_slack, request_id)
    request = stored(bot, request_id)
    assert request.status == "failed" and "would drop" in (request.invite_error or "")
    assert not fake_cf.calls_to("PUT", r"/members/"), "nothing they hold is ever lost"


# --- the form ---------------------------------------------------------------------------------------


def open_form(bot: BotUnderTest, fake_slack: FakeSlack, account_id: str) -> dict[str, Any]:
    """The request form, opened by `/cf-access` alone, with `account_id` picked."""
    return select_account(bot, fake_slack, open_modal(bot, fake_slack), account_id)


def zone_search(bot: BotUnderTest, view: dict[str, Any], account_id: str, typed: str) -> list[dict[str, Any]]:
    payload = {
        "type": "block_suggestion",
        "user": {"id": ALICE, "username": "alice", "name": "alice", "team_id": "T0TEAM0001"},
        "container": {"type": "view", "view_id": view["id"]},
        "api_app_id": "A0CFACCESS",
        "token": "legacy-verification-token",
        "action_id": "zones_select",
        "block_id": f"zones:{account_id}",
        "value": typed,
        "team": {"id": "T0TEAM0001", "domain": "acme"},
        "view": view,
    }
    response = bot.interact(payload)
    assert response.status_code == 200, response.text
    options: list[dict[str, Any]] = response.json()["options"]
    return options


def form_values(account_id: str, role_ids: list[str], zone_ids: list[str], reason: str) -> dict[str, Any]:
    chosen = [{"text": {"type": "plain_text", "text": "x"}, "value": value} for value in role_ids]
    zones = [{"text": {"type": "plain_text", "text": "x"}, "value": value} for value in zone_ids]
    return {
        "account": {
            "account_select": {
                "type": "static_select",
                "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": account_id},
            }
        },
        f"roles:{account_id}": {"roles_select": {"type": "multi_static_select", "selected_options": chosen}},
        f"zones:{account_id}": {"zones_select": {"type": "multi_external_select", "selected_options": zones}},
        "reason": {"reason_input": {"type": "plain_text_input", "value": reason}},
    }


def test_the_form_searches_zones_and_files_a_zone_scoped_request(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    zones = {name: fake_cf.add_zone(world.acme, name) for name in ("example.com", "example.net", "other.org")}
    for n in range(150):
        fake_cf.add_zone(world.acme, f"tenant{n:03}.example.io")
    bot = policies_bot(make_bot)
    view = open_form(bot, fake_slack, world.acme)
    zone_block = next(b for b in view["blocks"] if b.get("block_id") == f"zones:{world.acme}")
    assert zone_block["optional"] is True and zone_block["element"]["type"] == "multi_external_select"
    assert "options" not in zone_block["element"], "an external select loads its options from the bot"
    options = zone_search(bot, view, world.acme, "exa")
    assert [o["text"]["text"] for o in options[:2]] == ["example.com", "example.net"], "names that start with it"
    assert [o["value"] for o in options[:2]] == [zones["example.com"], zones["example.net"]]
    assert all("exa" in o["text"]["text"] for o in options), "then names that contain it"
    assert [o["text"]["text"] for o in zone_search(bot, view, world.acme, "OTHER")] == ["other.org"]
    assert len(zone_search(bot, view, world.acme, "")) == 100, "at most 100 options"
    calls = len(fake_cf.calls)
    zone_search(bot, view, world.acme, "other")
    assert len(fake_cf.calls) == calls, "searching costs no Cloudflare call once the zones are cached"

    misfit = form_values(world.acme, [PG_DNS["id"]], [zones["example.com"]], "records")
    response = bot.submit_view(view, misfit, user_id=ALICE)
    assert "DNS cannot be scoped to zones" in response.json()["errors"][f"roles:{world.acme}"]
    calls = len(fake_cf.calls)
    good = form_values(world.acme, [PG_DOMAIN_DNS["id"]], [zones["example.com"], zones["other.org"]], "records")
    response = bot.submit_view(view, good, user_id=ALICE)
    assert response.status_code == 200 and response.text == ""
    request = stored(bot, 1)
    assert request.zone_names == ["example.com", "other.org"] and request.requested_role_ids == [PG_DOMAIN_DNS["id"]]
    assert "zones example.com, other.org" in texts(fake_slack.dms_to(ALICE))
    assert not [c for c in fake_cf.calls[calls:] if c.method != "GET"]


def test_the_form_has_no_zones_for_a_roles_account(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_cf.without_policies_api(world.staging)
    bot = policies_bot(make_bot)
    view = open_form(bot, fake_slack, world.staging)
    assert not any(b.get("block_id", "").startswith("zones:") for b in view["blocks"])
    view = open_form(bot, fake_slack, world.acme)
    assert any(b.get("block_id") == f"zones:{world.acme}" for b in view["blocks"])


def test_home_shows_the_scope_and_a_picker_that_fits_it(
    make_bot: BotFactory, fake_slack: FakeSlack, fake_cf: FakeCloudflare, world: World
) -> None:
    fake_cf.add_zone(world.acme, "example.com")
    bot = policies_bot(make_bot)
    said = answer(bot, fake_slack, 'request "Acme Production" "Domain DNS" on example.com fix the MX', ALICE)
    assert "Request #1 filed" in said, said
    own = json.dumps(build_home(bot.services, ALICE).to_dict())
    assert "Domain DNS on the zone example.com" in own
    waiting = build_home(bot.services, BOB).to_dict()
    picker = next(
        b["accessory"] for b in waiting["blocks"] if (b.get("accessory") or {}).get("action_id") == "grant_roles"
    )
    assert {o["text"]["text"] for o in picker["options"]} >= {"Domain DNS"}
    assert "DNS" not in {o["text"]["text"] for o in picker["options"]}
