"""One module per kind of signal feed (file, HTTP, Prometheus, Electricity Maps, WattTime),
with their shared HTTP client, cache and settings; `build` makes one of each at start."""
