"""What the bot leaves for Python's cyclic garbage collector, whose passes stop every thread.

The collector runs when allocations pile up; a pass over a process full of reference cycles took
25-30 ms here, and every ack in flight waited it out (issue #15: one such stall in every 600 Approve
clicks set their p99). Memory freed by reference counting costs no pass. These tests keep the
busiest paths (Block Kit serialisation, Cloudflare calls, invite leases) from making cycles.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import SecretStr
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    OptionGroup,
    RichTextBlock,
    RichTextSectionElement,
    SectionBlock,
    StaticMultiSelectElement,
)

from bot.cloudflare.client import CloudflareClient, CloudflareCredentials
from bot.core.timers import Deadlines
from bot.slack import validation
from bot.slack.modals import deny_modal, revoke_modal
from bot.slack.validation import cache_block_kit_validators
from tests.fakes.cloudflare import FakeCloudflare


@contextmanager
def cyclic_garbage() -> Iterator[list[Any]]:
    """The objects that only the cyclic collector could free, made inside the block (kept, not freed)."""
    found: list[Any] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def from_module(objects: list[Any], prefix: str) -> list[Any]:
    """Objects of `prefix`'s types, and functions defined there (other threads' garbage is left out)."""
    return [
        o
        for o in objects
        if type(o).__module__.startswith(prefix)
        or (callable(o) and (getattr(o, "__module__", None) or "").startswith(prefix))
    ]


def sample_views() -> list[JsonObject]:
    """Real forms, and blocks with every kind of nesting the bot uses (fields, options in groups,
    elements in actions, an empty list Slack allows)."""
    role = Option(value="r1", label="Administrator")
    return [
        deny_modal(7, "Acme Production", "U0ALICE001", {"channel_id": "C0APPROVE1"}),
        revoke_modal(8, "Acme <Staging>", "U0ALICE001", {"channel_id": "C0APPROVE1"}),
        HeaderBlock(text="Access request #9"),
        SectionBlock(fields=[MarkdownTextObject(text="*Requester*\n<@U0ALICE001>"), MarkdownTextObject(text="x")]),
        ActionsBlock(
            block_id="grant:9",
            elements=[
                StaticMultiSelectElement(
                    action_id="grant_roles",
                    placeholder="Roles",
                    option_groups=[OptionGroup(label="Account", options=[role, Option(value="r2", label="DNS")])],
                    initial_options=[role],
                ),
                ButtonElement(text="Approve", action_id="request_approve", value="9", style="primary"),
            ],
        ),
        ContextBlock(elements=[MarkdownTextObject(text="filed 3 minutes ago")]),
        CheckboxesElement(action_id="c", options=[role], initial_options=[]),
        RichTextBlock(elements=[RichTextSectionElement(elements=[])]),
    ]


def serialised(views: list[JsonObject]) -> list[dict[str, Any]]:
    return [view.to_dict() for view in views]


def test_block_kit_serialises_exactly_as_slack_sdk_does_but_leaves_no_cycles(monkeypatch: Any) -> None:
    cache_block_kit_validators()
    views = sample_views()
    ours = serialised(views)
    with cyclic_garbage() as garbage:
        for _ in range(20):
            serialised(views)
    assert from_module(garbage, "slack_sdk") == []

    # slack_sdk's own serialiser gives the same dictionaries, and leaves four objects per object
    # serialised for the collector (which is what this test would see again if the patch went).
    assert validation._original_attributes is not None
    monkeypatch.setattr(JsonObject, "get_non_null_attributes", validation._original_attributes)
    assert serialised(views) == ours
    with cyclic_garbage() as garbage:
        serialised(views)
    assert len(from_module(garbage, "slack_sdk")) >= 20
    assert ours[0]["submit"] == {"type": "plain_text", "text": "Deny", "emoji": True}
    assert "initial_options" not in ours[-2]  # an empty list is left out...
    assert ours[-1]["elements"] == [{"type": "rich_text_section", "elements": []}]  # ...unless Slack allows it


def test_cloudflare_calls_leave_no_cycles_for_the_collector() -> None:
    fake = FakeCloudflare(token="cf-token-0123456789").start()
    try:
        account = fake.add_account("Acme Production")
        client = CloudflareClient(
            base_url=fake.url + "/client/v4",
            credentials=CloudflareCredentials(token=SecretStr("cf-token-0123456789")),
            sleep=lambda _s: None,
        )
        client.list_roles(account)  # the connection is opened before counting
        with cyclic_garbage() as garbage:
            for _ in range(10):
                assert client.list_roles(account)
        responses = [o for o in garbage if isinstance(o, httpx.Response) and str(o.request.url).startswith(fake.url)]
        assert responses == []
        client.close()
    finally:
        fake.stop()


def test_a_cancelled_deadline_lets_go_of_its_callback_at_once() -> None:
    """An invite's lease and its heartbeat referred to each other until the heartbeat's time came."""

    class Holder:
        def beat(self) -> None:
            raise AssertionError("cancelled")

    holder = Holder()
    gone = weakref.ref(holder)
    deadlines = Deadlines("test")
    deadline = deadlines.after(60, holder.beat)
    gc.disable()
    try:
        deadline.cancel()
        del holder
        assert gone() is None  # freed by reference counting, with the collector off
    finally:
        gc.enable()
    assert deadline.cancelled
