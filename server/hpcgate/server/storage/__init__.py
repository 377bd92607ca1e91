"""Storage tiers: what the caller has on each configured filesystem (quota.py)."""
