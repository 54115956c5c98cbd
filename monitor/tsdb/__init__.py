"""The in-memory series store and the internal scrape that fills it."""
