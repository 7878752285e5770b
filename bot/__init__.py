"""cf-access-bot: Cloudflare account access requests, approved in Slack."""
