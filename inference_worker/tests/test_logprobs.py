"""Naming the tokens of logprobs with the real tokenizers: the chosen tokens' names and
bytes add up to the answer's text, also where a character is split across tokens or its
bytes never complete (SmolLM2 sampled that at temperature 1.5: "Ben", a lone 0xE5, "AB")."""

from __future__ import annotations

import pytest
from django.conf import settings
from vllm.logprobs import Logprob

from inference_worker.engine.logprobs import entry, names_for
from inference_worker.local_models import SMOLLM2, is_built
from inference_worker.prompts import HarmonyPromptBuilder


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    path = settings.MODELS_DIR / SMOLLM2
    if not is_built(path):
        pytest.fail(f"{path} is not built: run scripts/setup.sh")
    return AutoTokenizer.from_pretrained(path)


def named(names, ids: list[int]) -> tuple[list[str], bytes]:
    pairs = [names.chosen(t) for t in ids]
    return [n for n, _ in pairs], b"".join(raw for _, raw in pairs)


def test_a_split_character_is_named_by_the_token_that_completes_it(smollm2_tokenizer):
    tok = smollm2_tokenizer
    split = tok.convert_tokens_to_ids(["å", "Ń", "Ĺ"])  # 字 as three byte tokens
    ids = tok.encode("Ben") + split + tok.encode("ABEL")
    assert tok.decode(ids) == "Ben字ABEL"
    names, raw = named(names_for(tokenizer=tok)(), ids)
    assert names == ["Ben", "", "", "字", "AB", "EL"]
    assert raw == "Ben字ABEL".encode()


def test_bytes_that_never_make_a_character_are_named_as_the_text_shows_them(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids = tok.encode("Ben") + tok.convert_tokens_to_ids(["å"]) + tok.encode("ABEL")
    text = tok.decode(ids)
    assert text == "Ben\ufffdABEL"
    names, raw = named(names_for(tokenizer=tok)(), ids)
    assert "".join(names) == text and raw.decode(errors="replace") == text
    assert raw[3] == 0xE5  # the token's own byte, not the replacement character's


def test_gpt_oss_names_its_split_characters_whole():
    encoding = HarmonyPromptBuilder(context_length=400).encoding
    ids = encoding.encode("鿽 and 字")
    assert len(ids) > 3 and encoding.decode(ids[:1]) == "\ufffd"  # harmony's own decoder, piece by piece
    names, raw = named(names_for(encoding=encoding)(), ids)
    assert "".join(names) == "鿽 and 字" and raw == "鿽 and 字".encode()
    assert names[:3] == ["", "", "鿽"]


def test_an_entry_has_its_alternatives_and_a_special_token_is_named_empty(smollm2_tokenizer):
    tok = smollm2_tokenizer
    paris, end = tok.encode(" Paris")[0], tok.eos_token_id
    position = {paris: Logprob(-0.1, 1, " Paris"), end: Logprob(-2.5, 2, tok.eos_token)}
    names = names_for(tokenizer=tok)()
    got = entry(paris, position, 2, names, frozenset(tok.all_special_ids))
    assert (got["token"], got["bytes"]) == (" Paris", list(b" Paris"))
    assert [t["token"] for t in got["top_logprobs"]] == [" Paris", tok.eos_token]
    special = entry(end, position, 0, names, frozenset(tok.all_special_ids))
    assert (special["token"], special["bytes"], special["top_logprobs"]) == ("", [], [])
    unlikely = entry(paris, {paris: Logprob(float("-inf"), 1, " Paris")}, 0, names)
    assert unlikely["logprob"] == -9999.0  # -inf is not JSON
