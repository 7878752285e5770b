"""The access workflow: filing, decisions, invites and their follow-up, sweeps, directory, audit.

Nothing here imports slack_sdk, slack_bolt or httpx: it talks to Slack and Cloudflare through
`bot.slack.gateway` and `bot.cloudflare.client`, and draws messages with `bot.slack` builders.
"""
