"""Rasa custom actions: thin wrappers that call the knowledge engine in ``bot/``.

rasa-sdk imports every module here when the action server starts and builds each action
with no arguments, so the engine is built lazily, once per process (``actions.runtime``).
"""
