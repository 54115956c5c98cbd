"""PromQL: parsing (via promql-parser) and evaluation over the local series store."""
