"""The response cache: backend interface, cache URLs, and which requests are answered from it and how; imports routing and wire."""
