"""Token cost: price tables (`pricing`), the ledger, budgets and forecasts (SPEC §9)."""
