"""The metric store, family declarations and exposition."""
