"""The ledger: what Klaviyo confirmed for each person of each list, so a run sends only what changed."""
