"""Service-level objectives (SPEC §8): Sloth specs, minute buckets, burn rates, rules."""
