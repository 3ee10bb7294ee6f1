"""How many replicas each model needs, from its p95 latency and request rate.

`decide` is the pure autoscaler (bounds for the joint solve, the Scaled condition);
`prometheus` reads latency, rate and measured demand from Prometheus. May import `api`; never
`kube`, `reconcile` or `signals`.
"""
