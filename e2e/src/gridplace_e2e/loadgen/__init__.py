"""Load generation: replay LLM request traces from user zones against OpenAI endpoints."""
