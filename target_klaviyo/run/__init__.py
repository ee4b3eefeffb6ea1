"""One run of the target: admission, batching, outcomes, STATE, the report and the stop."""
