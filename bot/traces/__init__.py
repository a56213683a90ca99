"""Every turn traced to SQL: what the bot saw, found, decided and said, and reviewers' labels."""

from bot.traces.queries import VERDICTS, TurnFilter, export_labelled, get_turn, label_turn, list_turns
from bot.traces.record import TurnContext, canned_row, knowledge_row
from bot.traces.redact import Redactor
from bot.traces.writer import TraceWriter, purge_older_than

__all__ = [
    "TurnContext",
    "knowledge_row",
    "canned_row",
    "Redactor",
    "TraceWriter",
    "purge_older_than",
    "TurnFilter",
    "VERDICTS",
    "list_turns",
    "get_turn",
    "label_turn",
    "export_labelled",
]
