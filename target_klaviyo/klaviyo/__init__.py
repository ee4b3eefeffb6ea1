"""What target-klaviyo knows about Klaviyo's API, and the one way it talks to it."""
