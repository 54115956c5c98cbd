"""inferwatch: one monitoring daemon for LLM inference hosts."""

__version__ = "0.1.0"
