"""Observability building blocks: typed progress events, one emitter, metrics, traces, logs, error types.

The package root deliberately imports nothing: `errors` and `events` are imported from
workflow code (inside the Temporal sandbox), which must not pull in prometheus_client,
the OTel SDK or logging handlers as a side effect.
"""
