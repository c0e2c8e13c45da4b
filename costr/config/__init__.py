"""providers.yaml and routing_policies/: reading, checking against the installed plugins, and pricing; imports wire and the top-level seams."""
