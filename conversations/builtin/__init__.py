"""gpt-oss's built-in tools: python in a sandbox, and a browser that cannot be
pointed at the deployment's own network."""
