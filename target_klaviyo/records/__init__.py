"""One Singer record -> one Klaviyo profile: emails, phones, values, consent, mapping."""
