"""cells_oidc.internal.jsontext: JSON from outside is Unicode text (RFC 8259 §8.1, §8.2)."""

from __future__ import annotations

import json

import pytest

from cells_oidc.internal import jsontext


@pytest.mark.parametrize(
    "text",
    [
        '{"jti": "\\ud800"}',  # a high half alone
        '{"jti": "\\udc00x"}',  # a low half alone
        '{"jti": "\\ud83d\\ud83d"}',  # two high halves
        '{"\\uDFFF": 1}',  # in a key, upper case
        '{"a": [{"b": ["\\ud800"]}]}',  # nested
    ],
)
def test_an_unpaired_surrogate_is_malformed_json(text: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads(text)
    with pytest.raises(ValueError):
        jsontext.loads(text.encode())


def test_a_raw_surrogate_in_the_bytes_is_not_utf8() -> None:
    # json.loads(bytes) decodes with "surrogatepass" and would return it.
    assert json.loads(b'{"a": "\xed\xa0\x80"}') == {"a": "\ud800"}
    with pytest.raises(ValueError):
        jsontext.loads(b'{"a": "\xed\xa0\x80"}')


def test_a_surrogate_already_in_the_text_given_is_refused() -> None:
    # Text someone decoded with "surrogatepass" or "surrogateescape" before handing it over.
    with pytest.raises(ValueError):
        jsontext.loads(b'{"a": "\xed\xa0\x80"}'.decode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"name": "\\ud83d\\ude00"}', {"name": "\U0001f600"}),  # a pair is one character
        ('{"name": "\\u00e9t\\u00e9", "n": 1}', {"name": "été", "n": 1}),
        ('{"name": "\\\\ud800"}', {"name": "\\ud800"}),  # an escaped backslash: six characters
        ("[1, 2]", [1, 2]),
    ],
)
def test_unicode_text_parses_as_json_does(text: str, value: object) -> None:
    assert jsontext.loads(text) == value == json.loads(text)
    assert jsontext.loads(text.encode("utf-8")) == value


@pytest.mark.parametrize("text", ['{"alg": "RS256", "alg": "none"}', '{"a": {"b": 1, "b": 2}}'])
def test_jose_refuses_a_member_named_twice(text: str) -> None:
    # RFC 7515 §4, RFC 7519 §4: one name, one value; plain JSON keeps the last (a parser differential).
    assert json.loads(text)
    with pytest.raises(jsontext.DuplicateMember):
        jsontext.loads(text, jose=True)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_jose_refuses_what_is_not_a_json_number(constant: str) -> None:
    assert jsontext.loads(f'{{"exp": {constant}}}') is not None  # Python's decoder takes them
    with pytest.raises(ValueError):
        jsontext.loads(f'{{"exp": {constant}}}', jose=True)


def test_check_unicode_walks_keys_and_values() -> None:
    jsontext.check_unicode({"a": ["b", {"c": "\U0001f600"}]})
    with pytest.raises(jsontext.UnpairedSurrogate):
        jsontext.check_unicode({"a": ["b", {"c": "\udc00"}]})
    with pytest.raises(jsontext.UnpairedSurrogate):
        jsontext.check_unicode({"\ud800": 1})
