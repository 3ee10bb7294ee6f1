"""Talking to the Kubernetes API server: the only part of the operator that does.

`client` (lists, server-side applies, status writes, Events), `rest` (plain-JSON requests),
`leader` (the Lease election that fences every write) and `refs` (the Secrets and ConfigMaps
signal feeds name). May import `api`, `labels`, `observe` (the views it lists into),
`report.metrics` (it counts its writes) and the error and cache types of `signals` (`refs`);
nothing that plans or decides.
"""
