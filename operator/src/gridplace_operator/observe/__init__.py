"""What the cluster looks like, as the planner reads it.

`world` is the in-memory mirror the watches fill (and what each change calls for); `inventory`
turns Nodes and running pods into free GPUs per region, GPU type and node. May import `api`,
`labels` and the small views of `reconcile` it fingerprints; never `kube`, `planning` or
`signals`.
"""
