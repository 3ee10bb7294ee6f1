"""A vLLM-compatible inference simulator: the OpenAI HTTP API (`server`), vLLM's metrics
(`metrics`), and vLLM's scheduler one step at a time (`steps` decides what a step does and costs,
`engine` runs the steps on real timers). `model` holds the dummy tokenizer and the answers, `cli`
the `gridplace-vllm-sim` command, `process` and `scrape` start one and read its metrics."""
