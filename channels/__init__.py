"""Rasa input channels of this project, named in ``credentials.yml`` by module path
(``channels.slack.KnowledgeSlackInput:``). ``rasa run`` imports them from the project root,
and with them the mend of Rasa's action response check (``channels/action_results.py``)."""

from channels.action_results import mend_action_result_validation

mend_action_result_validation()
