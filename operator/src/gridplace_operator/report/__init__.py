"""What the operator tells its users: `status` (conditions and fields of each
InferenceDeployment and Region) and `metrics` (its Prometheus metrics). May import `api` and
`labels`; never `kube`, `signals` or `reconcile`.
"""
