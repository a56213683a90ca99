"""Prompt templates: jinja2 files rendered in a sandbox, one per task and language.

Each chat template ``<task>.<lang>.j2`` defines a ``system`` block, optional worked examples
(``example_user_1``, ``example_assistant_1``, ...: small models follow a format far better when
shown one) and a ``user`` block; ``sources_only`` and ``refuse`` are plain text. Templates in ``generation.prompts_dir`` override
the built-in ones (``bot/prompts/``) by file name. Undefined variables are errors.

    prompts = Prompts()
    prompt = prompts.chat("answer", "zh", question="…", passages=[…], assistant="…")
    prompt.messages        # [{"role": "system", ...}, {"role": "user", ...}]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

from bot.errors import PromptError

__all__ = ["Prompts", "ChatPrompt", "BUILTIN_DIR", "LANGUAGES"]

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "prompts"
LANGUAGES = ("zh", "en")
_EXAMPLE = re.compile(r"example_(user|assistant)_(\d+)")


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered chat prompt: the template it came from and its messages."""

    template: str
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All messages as one string (for token counts and traces)."""
        return "\n\n".join(message["content"] for message in self.messages)


class Prompts:
    """The template set: built-in files, optionally overridden from ``override_dir``."""

    def __init__(self, override_dir: Path | None = None):
        folders = [str(p) for p in (override_dir, BUILTIN_DIR) if p is not None]
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._messages = _read_messages(BUILTIN_DIR / "messages.yml")
        if override_dir is not None and (override_dir / "messages.yml").exists():
            for language, entries in _read_messages(override_dir / "messages.yml").items():
                self._messages.setdefault(language, {}).update(entries)

    def message(self, key: str, language: str) -> str:
        """A fixed sentence (``decline``, ``llm_unavailable``, ...) in ``language``."""
        try:
            return self._messages[_language(language)][key]
        except KeyError as exc:
            raise PromptError(f"messages.yml has no {key!r} for language {language!r}") from exc

    def chat(self, task: str, language: str, **variables: Any) -> ChatPrompt:
        """Render ``task`` (answer, cautious, refine, rewrite, enhance) as chat messages:
        system (left out when empty), the worked examples in order, then user."""
        template = self._template(task, language)
        missing = {"system", "user"} - set(template.blocks)
        if missing:
            raise PromptError(f"{template.name} must define the blocks {sorted(missing)}")
        context = template.new_context(variables)
        try:
            messages = [
                {"role": role, "content": "".join(template.blocks[block](context)).strip()}
                for block, role in _message_blocks(template.blocks)
            ]
            messages = [m for m in messages if m["content"] or m["role"] != "system"]
        except jinja2.TemplateError as exc:
            raise PromptError(f"{template.name}: {exc}") from exc
        return ChatPrompt(template.name, messages)

    def text(self, task: str, language: str, **variables: Any) -> str:
        """Render a plain-text template (``sources_only``, ``refuse``)."""
        template = self._template(task, language)
        try:
            return template.render(**variables).strip()
        except jinja2.TemplateError as exc:
            raise PromptError(f"{template.name}: {exc}") from exc

    def _template(self, task: str, language: str) -> jinja2.Template:
        name = f"{task}.{_language(language)}.j2"
        try:
            return self.env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            raise PromptError(f"no prompt template {name} in {self.env.loader.searchpath}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"{name} line {exc.lineno}: {exc.message}") from exc


def _message_blocks(blocks: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(block, role) in message order: system, example_user_1, example_assistant_1, ..., user."""
    examples = sorted(
        (int(match.group(2)), match.group(1) != "user", name)
        for name in blocks
        if (match := _EXAMPLE.fullmatch(name))
    )
    return [
        ("system", "system"),
        *((name, "assistant" if is_assistant else "user") for _, is_assistant, name in examples),
        ("user", "user"),
    ]


def _language(language: str) -> str:
    """The template language for a detected one: ``zh`` or ``en`` (anything else)."""
    return "zh" if language.startswith("zh") else "en"


def _read_messages(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = yaml.safe_load(path.read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PromptError(f"cannot read {path}: {exc}") from exc
    return {str(language): dict(entries or {}) for language, entries in data.items()}
