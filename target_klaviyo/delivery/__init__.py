"""Getting profiles to Klaviyo: import jobs in flight, their errors, and subscriptions."""
