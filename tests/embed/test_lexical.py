"""The lexical encoder's terms: jieba words, stop words, synonyms, English stems."""

import pytest

from bot.embed.lexical import LexicalEncoder, Lexicon


@pytest.fixture(scope="module")
def encoder():
    return LexicalEncoder(Lexicon(stopwords=frozenset({"the", "的"}), synonyms={"reimbursement": "refund", "退钱": "退款"}))


@pytest.mark.parametrize(
    "one, other",
    [("symptoms", "symptom"), ("closed schools", "close school"), ("Running", "runs"), ("refunds", "refunding")],
)
def test_english_word_forms_are_one_term(encoder, one, other):
    assert encoder.tokenize(one) == encoder.tokenize(other)


def test_different_words_stay_different(encoder):
    assert encoder.tokenize("school") != encoder.tokenize("scholar")


def test_chinese_and_numbers_are_not_stemmed(encoder):
    assert encoder.tokenize("退款要多久 covid 19") == ["退款", "要", "多久", "covid", "19"]


def test_stop_words_and_synonyms_apply_to_whole_words(encoder):
    assert encoder.tokenize("the reimbursements") == ["reimburs"]  # a plural is not in the synonym table
    assert encoder.tokenize("the reimbursement") == encoder.tokenize("refund")
    assert encoder.tokenize("我要退钱的") == encoder.tokenize("我要退款")


def test_a_query_and_a_document_share_the_stemmed_term(encoder):
    query = encoder.encode_query("What are the symptoms?")
    document = encoder.encode_batch(["Common symptom: fever."], is_query=False)[0]
    assert set(query.indices) & set(document.indices)
