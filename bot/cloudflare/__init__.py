"""Cloudflare API v4: typed models and an httpx client for accounts, roles, members and tokens."""
