"""Cassettes are replayed, never recorded in CI, and hold no credentials."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

CASSETTES = sorted((Path(__file__).resolve().parents[1] / "cassettes").rglob("*.yaml"))
SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}
KEY_SHAPES = re.compile(r"sk-(ant-)?[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{30,}|cr-[A-Za-z0-9_-]{32,}")


def test_there_are_cassettes_for_every_provider_type():
    folders = {path.parent.name for path in CASSETTES}
    assert {"test_provider_anthropic", "test_provider_gemini", "test_translation_via_gateway",
            "test_plugin_example"} <= folders


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cassette_holds_no_credentials(path):
    data = yaml.safe_load(path.read_text())
    for interaction in data["interactions"]:
        headers = {k.lower() for k in (interaction["request"].get("headers") or {})}
        assert not headers & SECRET_HEADERS, f"{path.name} records a credential header"
        assert "key=" not in interaction["request"]["uri"]
    assert not KEY_SHAPES.search(path.read_text()), f"{path.name} contains something key-shaped"
