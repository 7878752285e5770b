"""The Cloudflare client against the fake API: auth forms, paging, envelope, typed errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from bot.cloudflare.client import CloudflareClient, CloudflareCredentials
from bot.cloudflare.errors import (
    CloudflareAuthError,
    CloudflareClientError,
    CloudflareNotFound,
    CloudflareRateLimited,
    CloudflareServerError,
    CloudflareUnavailable,
)
from tests.fakes.cloudflare import ADMIN, DNS, SUPER_ADMIN, FakeCloudflare, Fault

TOKEN = "cf-client-test-token"


@pytest.fixture
def cf() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare(token=TOKEN, email="owner@example.com", key="global-api-key-123").start()
    yield fake
    fake.stop()
    assert fake.schema_violations == []


def client_for(fake: FakeCloudflare, *, token: str | None = TOKEN, timeout: float = 2.0) -> CloudflareClient:
    credentials = (
        CloudflareCredentials(token=SecretStr(token))
        if token
        else CloudflareCredentials(email="owner@example.com", key=SecretStr("global-api-key-123"))
    )
    return CloudflareClient(
        base_url=fake.url + "/client/v4", credentials=credentials, timeout=timeout, sleep=lambda _s: None
    )


def test_bearer_token_and_legacy_key(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    assert [a.name for a in client_for(cf).list_accounts()] == ["Acme"]
    assert cf.calls[-1].headers["authorization"] == f"Bearer {TOKEN}"
    legacy = client_for(cf, token=None)
    assert legacy.get_account(account).name == "Acme"
    assert cf.calls[-1].headers["x-auth-email"] == "owner@example.com"
    assert cf.calls[-1].headers["x-auth-key"] == "global-api-key-123"


def test_every_list_is_paged_to_the_end_50_at_a_time(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    for n in range(123):
        cf.add_member(account, f"user{n}@example.com", [DNS["id"]])
    members = client_for(cf).list_members(account)
    assert len(members) == 123 and len({m.id for m in members}) == 123
    pages = cf.calls_to("GET", r"/members$")
    assert [c.query["page"] for c in pages] == ["1", "2", "3"]
    assert {c.query["per_page"] for c in pages} == {"50"}


def test_member_lifecycle(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    client = client_for(cf)
    member = client.create_member(account, email="New@Example.com", role_ids=[ADMIN["id"]])
    assert member.status == "pending" and member.contact_email == "new@example.com"
    assert member.role_ids == {ADMIN["id"]}
    assert cf.calls[-1].body == {"email": "New@Example.com", "roles": [ADMIN["id"]]}
    cf.accept(account, member.id)
    assert client.get_member(account, member.id).accepted
    client.delete_member(account, member.id)
    with pytest.raises(CloudflareNotFound):
        client.get_member(account, member.id)


def test_roles_and_token_verify(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    client = client_for(cf)
    assert SUPER_ADMIN["name"] in [role.name for role in client.list_roles(account)]
    assert client.verify_token().status == "active"
    assert client.verify_token(account).status == "active"
    cf.account_owned_token = True
    with pytest.raises(CloudflareAuthError):
        client.verify_token()


def test_errors_carry_cloudflare_code_and_message(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    client = client_for(cf)
    with pytest.raises(CloudflareClientError) as refused:
        client.create_member(account, email="x@example.com", role_ids=["0" * 32])
    assert refused.value.status == 400 and refused.value.code == 1001
    assert refused.value.message == "Invalid request: Invalid role assignments found"
    with pytest.raises(CloudflareAuthError) as denied:
        client_for(cf, token="wrong-token").list_accounts()
    assert denied.value.status == 403 and denied.value.code == 9109


def test_missing_credentials_header_error(cf: FakeCloudflare) -> None:
    import httpx

    response = httpx.get(cf.url + "/client/v4/accounts")
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == 9106


def test_reads_retry_on_429_and_5xx_but_posts_do_not(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    client = client_for(cf)
    cf.inject(Fault("GET", r"/roles$", status=429, headers={"Retry-After": "1"}))
    cf.inject(Fault("GET", r"/roles$", status=502))
    assert client.list_roles(account)
    assert len(cf.calls_to("GET", r"/roles$")) == 3
    cf.inject(Fault("POST", r"/members$", status=429, headers={"Retry-After": "7"}))
    with pytest.raises(CloudflareRateLimited) as limited:
        client.create_member(account, email="a@example.com", role_ids=[DNS["id"]])
    assert limited.value.retry_after == 7.0 and limited.value.code == 971
    cf.inject(Fault("POST", r"/members$", status=500))
    with pytest.raises(CloudflareServerError) as failed:
        client.create_member(account, email="a@example.com", role_ids=[DNS["id"]])
    assert failed.value.ambiguous
    assert len(cf.calls_to("POST", r"/members$")) == 2


def test_timeouts_and_dropped_connections_are_ambiguous(cf: FakeCloudflare) -> None:
    account = cf.add_account("Acme")
    client = client_for(cf, timeout=0.3)
    cf.inject(Fault("POST", r"/members$", status=200, delay=1.0, after_effect=True))
    with pytest.raises(CloudflareUnavailable) as slow:
        client.create_member(account, email="slow@example.com", role_ids=[DNS["id"]])
    assert slow.value.ambiguous
    assert cf.members_with_email(account, "slow@example.com"), "the member was created before the answer was lost"
    cf.inject(Fault("POST", r"/members$", drop=True, after_effect=True))
    with pytest.raises(CloudflareUnavailable):
        client.create_member(account, email="dropped@example.com", role_ids=[DNS["id"]])
