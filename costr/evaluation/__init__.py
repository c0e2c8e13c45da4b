"""Offline tools over labelled prompts: routing-quality metrics, the eval report, calibration of policies and confidence, given scores, plots; imports routing, config and wire, never the server."""
