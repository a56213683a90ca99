"""Fixtures for the Slack tests: a local stand-in for Slack's Web API (Slack itself cannot be
reached from here; see ``slack_standin.py``)."""

from __future__ import annotations

import pytest

from slack_standin import TEST_TOKEN, SlackApiStandIn


@pytest.fixture
def slack_api():
    """A running stand-in for Slack's Web API that accepts ``TEST_TOKEN`` (``.url``, ``.calls``)."""
    with SlackApiStandIn(token=TEST_TOKEN) as api:
        yield api
