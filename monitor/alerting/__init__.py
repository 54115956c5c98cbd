"""Rule files, rule evaluation, alert state and templates."""
