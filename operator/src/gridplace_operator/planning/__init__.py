"""One planning cycle: from what is observed to the plan each InferenceDeployment runs.

`problem` turns specs, Regions, signals and inventory into the placement problem;
`planner` runs the cycle (signals, autoscaler, joint solve, then reconcile and report);
`memory` is all that one cycle leaves to the next; `loop` debounces wake-ups into cycles;
`seams` the two interfaces to the clusters (where GPUs are, where writes go).
The one place that brings the other parts together.
"""
