"""The HTTP API: /metrics, /-/ lifecycle endpoints, and (later) the Prometheus-compatible API."""
