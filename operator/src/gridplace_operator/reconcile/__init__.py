"""Making the cluster match a plan.

`children` renders the Deployments, Services and PodDisruptionBudgets of a model's pools;
`routes` the HTTPRoutes that send each user zone to its regions; `writes` compares them with
what runs and orders the writes (make before break, drift repair). Pure: may import `api`,
`labels` and `observe`; never `signals`, `planning` or `kube`.
"""
