"""Guardrails: structural checks the code makes, whatever the LLM would do.

- :class:`InputGuard`: attacks on the assistant (injection, role override, prompt leaks, secrets).
- :class:`SensitiveGuard`: money, account and legal topics by their words and by the retrieved
  items' ``topic`` metadata.
- :class:`ModerationClient`: an optional moderation model (``endpoints.yml: moderation``).
- :class:`OutputGuard`: numbers, amounts, e-mails, URLs, names and claims of an answer must be
  in the passages it cites.
- :class:`Guard`: all of them for one engine. Their word lists are YAML files in ``lexicon/``.
"""

from bot.guard.guard import Guard
from bot.guard.input import InputGuard
from bot.guard.lexicon import DEFAULT_DIR, Rules, normalize
from bot.guard.moderation import ModerationClient, ModerationError
from bot.guard.output import Evidence, OutputGuard
from bot.guard.sensitive import SensitiveGuard
from bot.guard.verdict import ATTACK_RESPONSE, DECISIONS, LAYERS, GuardVerdict

__all__ = [
    "Guard",
    "GuardVerdict",
    "InputGuard",
    "SensitiveGuard",
    "OutputGuard",
    "Evidence",
    "ModerationClient",
    "ModerationError",
    "Rules",
    "normalize",
    "DEFAULT_DIR",
    "ATTACK_RESPONSE",
    "DECISIONS",
    "LAYERS",
]
