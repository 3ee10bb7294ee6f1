"""Carbon intensity and power price per Region: the feeds and how their answers are used.

`sources` holds the provider protocol, the non-blocking reads and `resolve` (fresh value,
stale value, fallback); `providers/` holds one module per kind of feed (static, file, HTTP,
Prometheus, Electricity Maps, WattTime). May import `api` and `kube.refs` (API keys in
Secrets); never `reconcile` or `planning`.
"""
