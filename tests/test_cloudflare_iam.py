"""The policies model at the Cloudflare edge: the client's IAM calls and bodies, and the fake that
answers them as the reference and the vendored schema say (issue 12, item 4)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bot.access.access_model import Grantable
from bot.cloudflare.errors import CloudflareClientError, CloudflareNotFound
from bot.cloudflare.models import PolicySpec
from tests.fakes.block_kit import view_errors
from tests.fakes.cloudflare import (
    ADMIN,
    BILLING,
    DNS,
    PG_ADMIN,
    PG_ADMIN_RO,
    PG_DNS,
    PG_DOMAIN_DNS,
    FakeCloudflare,
)
from tests.test_cloudflare_client import TOKEN, client_for


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare(token=TOKEN).start()
    yield fake
    fake.stop()


def wide(cf: FakeCloudflare, account: str) -> str:
    return str(cf.account_wide_group(account)["id"])


def test_permission_groups_are_paged_and_read_with_their_untidy_meta(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    groups = client_for(cf).list_permission_groups(account)
    assert [c.query["per_page"] for c in cf.calls_to("GET", r"/permission_groups$")] == ["50"]
    by_id = {group.id: Grantable.of_permission_group(group) for group in groups}
    admin_ro = by_id[PG_ADMIN_RO["id"]]
    assert (admin_ro.label, admin_ro.description) == ("admin_readonly", "admin_readonly"), "no description: the label"
    domain = by_id[PG_DOMAIN_DNS["id"]]
    assert domain.zone_scopable and not domain.account_scopable
    assert by_id[PG_DNS["id"]].account_scopable and not by_id[PG_DNS["id"]].zone_scopable
    assert [g.super_admin for g in by_id.values()].count(True) == 1
    assert cf.schema_violations == []


def test_an_account_without_the_policies_api_answers_404(cf: FakeCloudflare) -> None:
    account = cf.add_account("Old", policies_api=False)
    client = client_for(cf)
    with pytest.raises(CloudflareNotFound):
        client.list_permission_groups(account)
    with pytest.raises(CloudflareNotFound):
        client.list_resource_groups(account)
    assert client.list_roles(account), "the roles API still answers"


@pytest.mark.parametrize("as_array", [False, True])
def test_resource_groups_are_one_listing_and_their_scope_is_read_either_way(cf: FakeCloudflare, as_array: bool) -> None:
    cf.scope_as_array = as_array
    account = cf.add_account("Acme")
    zone = cf.add_zone(account, "example.com")
    zoned = cf.add_resource_group(account, [zone])
    groups = {group.id: group for group in client_for(cf).list_resource_groups(account)}
    assert "page" not in cf.calls_to("GET", r"/resource_groups$")[-1].query, "the 2026 listing has no paging"
    assert groups[wide(cf, account)].is_account_wide(account) and not groups[wide(cf, account)].zone_ids
    assert groups[zoned].zone_ids == {zone} and not groups[zoned].is_account_wide(account)


def test_creating_a_zone_group_sends_the_schemas_body(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    zones = [cf.add_zone(account, "a.example"), cf.add_zone(account, "b.example")]
    created = client_for(cf).create_resource_group(account, name="cf-access-bot: a.example, b.example", zone_ids=zones)
    assert created.zone_ids == set(zones)
    assert cf.calls_to("POST", r"/resource_groups$")[-1].body == {
        "name": "cf-access-bot: a.example, b.example",
        "scope": {
            "key": f"com.cloudflare.api.account.{account}",
            "objects": [{"key": f"com.cloudflare.api.account.zone.{zone}"} for zone in zones],
        },
    }
    with pytest.raises(CloudflareClientError):
        client_for(cf).create_resource_group(account, name="empty", zone_ids=[])
    assert cf.schema_violations == []


def test_zones_are_found_by_exact_name_and_listed_in_pages(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    other = cf.add_account("Other")
    for n in range(60):
        cf.add_zone(account, f"z{n:02}.example")
    cf.add_zone(other, "z01.example")
    client = client_for(cf)
    [found] = client.find_zones(account, "z01.example")
    assert found.name == "z01.example"
    assert cf.calls_to("GET", r"^/zones$")[-1].query["account.id"] == account
    assert client.find_zones(account, "z01.exam") == [], "the name filter is exact"
    assert len(client.list_zones(account)) == 60


def test_members_keep_roles_and_policies_in_step(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    client = client_for(cf)
    grant = PolicySpec(permission_group_ids=(PG_ADMIN["id"],), resource_group_ids=(wide(cf, account),))
    created = client.create_member(account, email="a@example.com", policies=[grant])
    member = client.get_member(account, created.id)
    assert [role.id for role in member.roles] == [ADMIN["id"]], "a policy brings its legacy role"
    updated = client.update_member(account, created.id, role_ids=[ADMIN["id"], BILLING["id"]])
    assert cf.calls_to("PUT", r"/members/")[-1].body == {"roles": [{"id": ADMIN["id"]}, {"id": BILLING["id"]}]}
    assert {group.name for policy in updated.policies for group in policy.permission_groups} == {
        "Administrator",
        "Billing",
    }, "roles bring their policy"
    with pytest.raises(ValueError, match="exactly one"):
        client.create_member(account, email="b@example.com", role_ids=[DNS["id"]], policies=[grant])
    with pytest.raises(ValueError, match="exactly one"):
        client.update_member(account, created.id)
    assert cf.schema_violations == []


def test_roles_and_policies_together_are_refused(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    body = {
        "email": "a@example.com",
        "roles": [DNS["id"]],
        "policies": [{"access": "allow", "permission_groups": [{"id": PG_DNS["id"]}], "resource_groups": []}],
    }
    answer = httpx.post(
        f"{cf.url}/client/v4/accounts/{account}/members", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 400 and cf.schema_violations, "the schema's oneOf refuses both"
    assert cf.members_with_email(account, "a@example.com") == []


def test_a_group_on_the_wrong_scope_is_error_1006(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    zone_group = cf.add_resource_group(account, [cf.add_zone(account, "example.com")])
    client = client_for(cf)
    for group_id, resource_id in ((PG_DNS["id"], zone_group), (PG_DOMAIN_DNS["id"], wide(cf, account))):
        grant = PolicySpec(permission_group_ids=(group_id,), resource_group_ids=(resource_id,))
        with pytest.raises(CloudflareClientError) as refused:
            client.create_member(account, email="a@example.com", policies=[grant])
        assert refused.value.code == 1006 and "invalid permission group and resource group combination" in str(
            refused.value
        )
    assert cf.members_with_email(account, "a@example.com") == []
    assert cf.schema_violations == []


def test_the_fake_slack_takes_an_external_select_and_refuses_what_slack_would() -> None:
    element = {"type": "multi_external_select", "action_id": "zones_select", "min_query_length": 0}
    view = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Cloudflare access"},
        "submit": {"type": "plain_text", "text": "Request"},
        "blocks": [{"type": "input", "label": {"type": "plain_text", "text": "Zones"}, "element": element}],
    }
    assert view_errors(view) == ("", []), "an external select needs no options in the view"
    element["options"] = [{"text": {"type": "plain_text", "text": "a"}, "value": "a"}]
    assert view_errors(view)[0] == "invalid_arguments"
    del element["options"]
    element["max_selected_items"] = 0
    assert view_errors(view)[0] == "invalid_arguments"
