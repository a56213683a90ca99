"""The mended check of action server responses (channels/action_results.py) accepts and rejects
exactly what Rasa's own check does, with Rasa's error message."""

import jsonschema
import pytest
from rasa.core.actions.action import RemoteAction

import channels  # noqa: F401  (applies the mend, as `rasa run` does through credentials.yml)
from channels.action_results import _validate_action_result

RESPONSES = [
    {"events": [], "responses": []},
    {"events": [{"event": "slot", "name": "language", "value": "zh", "timestamp": None}]},
    {"events": [{"event": "bot", "text": "hi"}], "responses": [{"text": "hi", "json_message": {"type": "x"}}]},
    {},
    {"events": "not a list"},
    {"events": [{"name": "language"}]},
    {"events": [{"event": "slot", "name": 5}], "responses": []},
    {"responses": "not a list"},
]


def rasa_verdict(response: dict) -> bool:
    try:
        jsonschema.validate(response, RemoteAction.action_response_format_spec())
    except jsonschema.ValidationError:
        return False
    return True


def test_the_mend_is_what_rasa_runs():
    assert RemoteAction._validate_action_result is _validate_action_result


@pytest.mark.parametrize("response", RESPONSES, ids=[str(i) for i in range(len(RESPONSES))])
def test_same_verdict_as_rasa(response):
    action = RemoteAction("action_answer_from_knowledge", None)
    if rasa_verdict(response):
        assert action._validate_action_result(response) is True
    else:
        with pytest.raises(jsonschema.ValidationError, match="Failed to validate Action server response"):
            action._validate_action_result(response)


def test_both_verdicts_occur():
    verdicts = {rasa_verdict(response) for response in RESPONSES}
    assert verdicts == {True, False}
