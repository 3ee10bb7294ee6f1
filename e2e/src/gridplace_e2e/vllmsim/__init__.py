"""A vLLM-compatible inference simulator: OpenAI HTTP API, vLLM metrics, batch slots and a queue."""
