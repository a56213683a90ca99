"""Prompt templates (bot/llm/prompts.py and bot/prompts/): rendering, message order, strictness,
sandboxing, overrides and the fixed messages. No LLM involved."""

from __future__ import annotations

import re

import jinja2
import pytest
from jinja2 import meta

from bot.errors import PromptError
from bot.generate import Generator
from bot.llm.prompts import BUILTIN_DIR, ChatPrompt, Prompts
from bot.retrieve import Hit

CHAT_TASKS = ("answer", "cautious", "refine", "rewrite", "enhance")

# What each template's header comment lists (checked against the header itself below).
HEADER_VARIABLES = {
    "answer": {"question", "passages", "assistant", "decline"},
    "cautious": {"question", "passages", "assistant", "decline"},
    "refine": {"question", "passages", "answer", "assistant"},
    "rewrite": {"question", "history"},
    "enhance": {"text", "heading", "count"},
}

PASSAGES = [
    {"number": 1, "heading": "Refunds > Timing", "text": "Refunds reach the card within 7 working days."},
    {"number": 2, "heading": "Parking", "text": "Parking is free for customers."},
]

SAMPLE_VALUES = {
    "question": "How long do refunds take?",
    "passages": PASSAGES,
    "assistant": "ASSISTANT-NAME",
    "decline": "DECLINE-SENTENCE",
    "answer": "DRAFT-ANSWER [1]",
    "history": [
        {"role": "user", "content": "What is the Nimbus Pen?"},
        {"role": "assistant", "content": "A smart pen."},
    ],
    "text": "ENHANCE-TEXT body",
    "heading": "ENHANCE-HEADING",
    "count": 5,
}


@pytest.fixture(scope="module")
def prompts() -> Prompts:
    return Prompts()


def _header_variables(task: str, language: str) -> set[str]:
    source = (BUILTIN_DIR / f"{task}.{language}.j2").read_text("utf-8")
    header = re.match(r"\{#-?(.*?)-?#\}", source, re.S)
    assert header, f"{task}.{language}.j2 has no header comment"
    listed = re.search(r"(?:Variables:|变量：)([^\n]*)", header.group(1))
    assert listed, f"{task}.{language}.j2 header lists no variables"
    names = re.sub(r"\([^)]*\)|（[^）]*）", "", listed.group(1))
    return {name.strip(" .。") for name in re.split(r"[,，]", names) if name.strip(" .。")}


def _variables(task: str) -> dict:
    return {name: SAMPLE_VALUES[name] for name in HEADER_VARIABLES[task]}


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("task", CHAT_TASKS)
def test_header_lists_every_variable_the_template_uses(prompts, task, language):
    name = f"{task}.{language}.j2"
    assert _header_variables(task, language) == HEADER_VARIABLES[task]
    source = prompts.env.loader.get_source(prompts.env, name)[0]
    used = meta.find_undeclared_variables(prompts.env.parse(source))
    assert used <= HEADER_VARIABLES[task], f"{name} uses variables its header does not list: {used}"


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("task", CHAT_TASKS)
def test_builtin_chat_template_renders_in_message_order(prompts, task, language):
    prompt = prompts.chat(task, language, **_variables(task))
    assert isinstance(prompt, ChatPrompt)
    assert prompt.template == f"{task}.{language}.j2"
    roles = [m["role"] for m in prompt.messages]
    system_present = roles[0] == "system"
    body = roles[1:] if system_present else roles
    # examples alternate user/assistant, then the real user message comes last
    assert len(body) % 2 == 1 and body[-1] == "user"
    assert body[:-1] == ["user", "assistant"] * (len(body) // 2)
    assert all(m["content"] and m["content"] == m["content"].strip() for m in prompt.messages)
    assert prompt.text == "\n\n".join(m["content"] for m in prompt.messages)
    # rewrite.en has an empty system block: it is left out
    if (task, language) == ("rewrite", "en"):
        assert roles == ["user"]
    else:
        assert system_present


def test_answer_template_examples_and_values(prompts):
    prompt = prompts.chat("answer", "en", **_variables("answer"))
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    system, ex_user_1, ex_assistant_1, ex_user_2, ex_assistant_2, user = (m["content"] for m in prompt.messages)
    assert system.startswith("You are ASSISTANT-NAME.")
    assert "When does the shop close?" in ex_user_1 and ex_assistant_1 == "The shop closes at 18:00 [2]."
    assert "gift cards" in ex_user_2
    assert ex_assistant_2 == "DECLINE-SENTENCE"
    assert user.endswith("Question: How long do refunds take?")


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("task", ["answer", "cautious", "refine"])
def test_passages_appear_numbered_in_order_in_the_user_message(prompts, task, language):
    prompt = prompts.chat(task, language, **_variables(task))
    user = prompt.messages[-1]["content"]
    first = user.index("[1] Refunds > Timing\nRefunds reach the card within 7 working days.")
    second = user.index("[2] Parking\nParking is free for customers.")
    assert first < second
    assert "<context>" in user and "</context>" in user
    # the passages are only in the real user message, not in system or the examples
    assert all("Refunds reach the card" not in m["content"] for m in prompt.messages[:-1])
    if task == "refine":
        assert "DRAFT-ANSWER [1]" in user


@pytest.mark.parametrize("language", ["zh", "en"])
def test_rewrite_shows_history_and_question(prompts, language):
    prompt = prompts.chat("rewrite", language, **_variables("rewrite"))
    user = prompt.messages[-1]["content"]
    assert "What is the Nimbus Pen?" in user and "A smart pen." in user
    assert user.index("What is the Nimbus Pen?") < user.index("A smart pen.") < user.index("How long do refunds take?")
    label = {"en": ("User: ", "Assistant: "), "zh": ("用户：", "助手：")}[language]
    assert f"{label[0]}What is the Nimbus Pen?" in user and f"{label[1]}A smart pen." in user


@pytest.mark.parametrize("language", ["zh", "en"])
def test_enhance_renders_count_heading_text(prompts, language):
    prompt = prompts.chat("enhance", language, **_variables("enhance"))
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert "5" in prompt.messages[0]["content"]
    assert prompt.messages[1]["content"] == "ENHANCE-HEADING\nENHANCE-TEXT body"


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("task", CHAT_TASKS)
def test_each_missing_variable_raises_prompt_error(prompts, task, language):
    for missing in HEADER_VARIABLES[task]:
        variables = _variables(task)
        del variables[missing]
        with pytest.raises(PromptError, match=rf"'{missing}' is undefined"):
            prompts.chat(task, language, **variables)


def test_unknown_template_raises_prompt_error(prompts):
    with pytest.raises(PromptError, match=r"no prompt template nosuch\.en\.j2"):
        prompts.chat("nosuch", "en")
    with pytest.raises(PromptError, match=r"nosuch\.zh\.j2"):
        prompts.text("nosuch", "zh-CN")


def test_language_variants_choose_the_template(prompts):
    assert prompts.chat("enhance", "zh-TW", **_variables("enhance")).template == "enhance.zh.j2"
    assert prompts.chat("enhance", "fr", **_variables("enhance")).template == "enhance.en.j2"


def test_example_blocks_are_ordered_numerically(tmp_path):
    (tmp_path / "answer.en.j2").write_text(
        "{% block example_user_10 %}u10{% endblock %}"
        "{% block user %}U{% endblock %}"
        "{% block example_assistant_2 %}a2{% endblock %}"
        "{% block example_user_2 %}u2{% endblock %}"
        "{% block example_assistant_10 %}a10{% endblock %}"
        "{% block system %}S{% endblock %}"
        "{% block example_assistant_1 %}a1{% endblock %}"
        "{% block example_user_1 %}u1{% endblock %}",
        "utf-8",
    )
    prompt = Prompts(override_dir=tmp_path).chat("answer", "en")
    assert [(m["role"], m["content"]) for m in prompt.messages] == [
        ("system", "S"),
        ("user", "u1"), ("assistant", "a1"),
        ("user", "u2"), ("assistant", "a2"),
        ("user", "u10"), ("assistant", "a10"),
        ("user", "U"),
    ]  # fmt: skip


def test_whitespace_only_system_block_is_left_out(tmp_path):
    (tmp_path / "answer.en.j2").write_text("{% block system %}  \n  {% endblock %}{% block user %}U{% endblock %}")
    prompt = Prompts(override_dir=tmp_path).chat("answer", "en")
    assert prompt.messages == [{"role": "user", "content": "U"}]


def test_chat_template_without_user_block_is_rejected(tmp_path):
    (tmp_path / "answer.en.j2").write_text("{% block system %}S{% endblock %}")
    with pytest.raises(PromptError, match=r"answer\.en\.j2 must define the blocks \['user'\]"):
        Prompts(override_dir=tmp_path).chat("answer", "en")


ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}"


def test_sandbox_blocks_escape_in_chat_template(tmp_path):
    (tmp_path / "answer.en.j2").write_text(
        "{% block system %}S{% endblock %}{% block user %}" + ESCAPE + "{% endblock %}", "utf-8"
    )
    with pytest.raises(PromptError, match=r"answer\.en\.j2: access to attribute '__class__' of 'str' object is unsafe") as info:
        Prompts(override_dir=tmp_path).chat("answer", "en")
    assert isinstance(info.value.__cause__, jinja2.exceptions.SecurityError)
    assert "subclasses" not in str(info.value) and "<class" not in str(info.value)


def test_sandbox_blocks_escape_in_plain_template(tmp_path):
    (tmp_path / "refuse.en.j2").write_text(ESCAPE, "utf-8")
    with pytest.raises(PromptError, match=r"refuse\.en\.j2: access to attribute '__class__'") as info:
        Prompts(override_dir=tmp_path).text("refuse", "en")
    assert isinstance(info.value.__cause__, jinja2.exceptions.SecurityError)


def test_sandbox_is_used(prompts):
    assert isinstance(prompts.env, jinja2.sandbox.SandboxedEnvironment)
    # even without the Prompts wrapper, the environment refuses the attribute
    with pytest.raises(jinja2.exceptions.SecurityError):
        prompts.env.from_string(ESCAPE).render()


def test_override_dir_wins_by_file_name_only(tmp_path):
    (tmp_path / "answer.en.j2").write_text(
        "{% block system %}OVERRIDE {{ assistant }}{% endblock %}{% block user %}Q={{ question }}{% endblock %}",
        "utf-8",
    )
    overridden = Prompts(override_dir=tmp_path)
    prompt = overridden.chat("answer", "en", assistant="A", question="why?")
    assert prompt.messages == [
        {"role": "system", "content": "OVERRIDE A"},
        {"role": "user", "content": "Q=why?"},
    ]
    # other templates (also the other language of the same task) still come from bot/prompts/
    builtin = Prompts()
    for task, language in [("answer", "zh"), ("cautious", "en"), ("refine", "en")]:
        variables = _variables(task)
        assert overridden.chat(task, language, **variables) == builtin.chat(task, language, **variables)
    assert overridden.text("refuse", "en", question="q", topics="T", suggestions=[]) == builtin.text(
        "refuse", "en", question="q", topics="T", suggestions=[]
    )


def test_builtin_prompts_ignore_a_missing_override_dir(tmp_path):
    prompts = Prompts(override_dir=tmp_path / "absent")
    assert prompts.chat("enhance", "en", **_variables("enhance")).messages[1]["content"].startswith("ENHANCE-HEADING")
    assert prompts.message("decline", "en") == Prompts().message("decline", "en")


def test_override_messages_replace_single_keys(tmp_path):
    builtin = Prompts()
    (tmp_path / "messages.yml").write_text("en:\n  decline: No idea, sorry.\nzh:\n  assistant: 测试助手\n", "utf-8")
    prompts = Prompts(override_dir=tmp_path)
    assert prompts.message("decline", "en") == "No idea, sorry."
    assert prompts.message("assistant", "zh") == "测试助手"
    # the other keys are the built-in ones
    assert prompts.message("assistant", "en") == builtin.message("assistant", "en")
    assert prompts.message("decline", "zh") == builtin.message("decline", "zh")
    assert prompts.message("topics", "zh") == builtin.message("topics", "zh")
    # the built-in Prompts is not changed by another instance's override
    assert builtin.message("decline", "en") == "Sorry, the knowledge base does not say enough to answer this."


def test_invalid_override_messages_raise_prompt_error(tmp_path):
    (tmp_path / "messages.yml").write_text("en: [unclosed\n", "utf-8")
    with pytest.raises(PromptError, match="cannot read"):
        Prompts(override_dir=tmp_path)


def test_message_languages_and_unknown_key(prompts):
    assert prompts.message("sources_heading", "zh") == "来源"
    assert prompts.message("sources_heading", "zh-TW") == "来源"
    assert prompts.message("sources_heading", "zh-CN") == "来源"
    assert prompts.message("sources_heading", "en") == "Sources"
    assert prompts.message("sources_heading", "en-US") == "Sources"
    assert prompts.message("sources_heading", "de") == "Sources"
    with pytest.raises(PromptError, match="no 'nosuch' for language 'zh-TW'"):
        prompts.message("nosuch", "zh-TW")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_message_key_exists_in_both_languages(prompts, language):
    for key in ("assistant", "topics", "decline", "llm_unavailable", "sources_heading"):
        assert prompts.message(key, language).strip()


def test_syntax_error_names_the_line(tmp_path):
    (tmp_path / "answer.en.j2").write_text(
        "{% block system %}\nfine\n{% endblock %}\n{% block user %}\n{% if %}\n{% endblock %}\n", "utf-8"
    )
    with pytest.raises(PromptError, match=r"answer\.en\.j2 line 5: ") as info:
        Prompts(override_dir=tmp_path).chat("answer", "en")
    assert isinstance(info.value.__cause__, jinja2.TemplateSyntaxError)
    (tmp_path / "refuse.en.j2").write_text("ok\n{{ topics \n", "utf-8")
    with pytest.raises(PromptError, match=r"refuse\.en\.j2 line \d+: "):
        Prompts(override_dir=tmp_path).text("refuse", "en", topics="x", suggestions=[])


# --- plain templates, with the variables bot/generate.py passes -----------------------------------


def _hit(rank: int, payload: dict) -> Hit:
    return Hit(f"id-{rank}", rank, 1.0 / rank, {"content_dense": 0.5}, payload)


@pytest.fixture()
def source_passages(prompts):
    hits = [
        _hit(1, {"question": "How long do refunds take?", "text": "Refunds take 7 days. " * 12, "source": "faq.csv",
                 "metadata": {"url": "https://example.com/refunds"}}),
        _hit(2, {"title": "Guide", "section": "Pairing", "text": "Hold the button for 3 seconds.",
                 "source": "docs/guide.md"}),
        _hit(3, {"title": "Notes", "text": "No link here."}),
    ]  # fmt: skip
    return Generator(client=None, prompts=prompts, counter=None, settings=None).passages(hits)


def test_sources_only_en_renders_numbered_linked_passages(prompts, source_passages):
    text = prompts.text("sources_only", "en", question="q", passages=source_passages, notice="")
    lines = text.splitlines()
    assert lines[0] == "I am not sure enough to answer this myself. These sources may help:"
    assert lines[1].startswith("[1] [How long do refunds take?](https://example.com/refunds): Refunds take 7 days.")
    assert lines[1].endswith("…") and len(lines[1].split(": ", 1)[1]) == 120
    assert lines[2] == "[2] [Guide > Pairing](docs/guide.md): Hold the button for 3 seconds."
    assert lines[3] == "[3] Notes: No link here."
    assert len(lines) == 4


def test_sources_only_shows_the_notice_first(prompts, source_passages):
    notice = prompts.message("llm_unavailable", "zh")
    text = prompts.text("sources_only", "zh-CN", question="q", passages=source_passages[:1], notice=notice)
    lines = text.splitlines()
    assert lines[0] == notice
    assert lines[1] == "这个问题我没有足够把握直接回答，以下资料可能有帮助："
    assert lines[2].startswith("[1] [How long do refunds take?](https://example.com/refunds)：Refunds take")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_sources_only_requires_its_variables(prompts, language):
    with pytest.raises(PromptError, match="'notice' is undefined"):
        prompts.text("sources_only", language, question="q", passages=[])


def test_refuse_lists_topics_and_suggestions(prompts):
    topics = prompts.message("topics", "en")
    text = prompts.text("refuse", "en", question="q", topics=topics, suggestions=["How do I pair?", "What plans exist?"])
    assert text.splitlines() == [
        "Sorry, I could not find anything about that in my knowledge base, so I would rather not guess.",
        f"I can answer questions about {topics}.",
        "For example:",
        "- How do I pair?",
        "- What plans exist?",
    ]
    zh = prompts.text("refuse", "zh", question="q", topics="云序笔记", suggestions=["怎么配对？"])
    assert zh.splitlines() == [
        "抱歉，我的知识库里没有找到相关内容，为避免误导就不猜测了。",
        "我可以回答关于云序笔记的问题。",
        "例如：",
        "- 怎么配对？",
    ]


@pytest.mark.parametrize("language", ["zh", "en"])
def test_refuse_without_topics_or_suggestions_is_one_sentence(prompts, language):
    text = prompts.text("refuse", language, question="q", topics="", suggestions=[])
    assert text and "\n" not in text
    with pytest.raises(PromptError, match="'suggestions' is undefined"):
        prompts.text("refuse", language, question="q", topics="")
