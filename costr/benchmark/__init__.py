"""`costr bench`: the latency and CPU Costr adds in front of a local fake upstream; imports costr.testing and nothing on the request path."""
