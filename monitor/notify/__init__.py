"""Alert delivery: routing, grouping, inhibition, silences, the durable outbox and channels."""
