"""Rasa input channels of this project, named in ``credentials.yml`` by module path
(``channels.slack.KnowledgeSlackInput:``). ``rasa run`` imports them from the project root."""
