"""`fsgr.files.parse_json`: orjson's speed, the standard library's answers (values and errors); `read_json`'s one-line refusals."""

import json

import pytest

from fsgr.files import parse_json


@pytest.mark.parametrize("text", [
    '{"annotations": [{"image_id": 1, "caption": "a dog"}], "info": null}',
    '[1, -0, 1.5e-300, 123456789012345678, "caf\\u00e9 \\ud83d\\ude00", true, false, {}, []]',
    '{"a": 1, "a": 2}',                       # (the last duplicate wins in both)
    '"\\u0000\\u001f\\"\\\\"',
])
def test_parse_json_gives_what_json_loads_gives(text):
    assert parse_json(text.encode("utf-8")) == json.loads(text)


@pytest.mark.parametrize("text", ['[NaN, Infinity, -Infinity]', '["a \\ud800 b"]'])
def test_what_orjson_refuses_is_read_by_the_standard_library(text):
    got = parse_json(text.encode("utf-8"))
    assert repr(got) == repr(json.loads(text))


def test_nesting_past_what_json_reads_is_a_recursion_error():
    with pytest.raises(RecursionError):
        parse_json(b"[" * 2000 + b"]" * 2000)


def test_bad_files_raise_the_standard_librarys_errors():
    with pytest.raises(json.JSONDecodeError) as info:
        parse_json(b'{"a": 1,\n "b": }')
    assert (info.value.lineno, info.value.colno) == (2, 7)
    with pytest.raises(UnicodeDecodeError):
        parse_json(b'{"a": "\xff"}')


class _CallsOpen:
    def __reduce__(self):
        return (open, ("never-created", "w"))


@pytest.mark.parametrize("how", ["zip", "legacy", "plain-pickle"])
def test_a_refused_pickle_is_named_without_torchs_advice_to_load_it_unsafely(tmp_path, how):
    import pickle

    import torch

    from fsgr.files import why_unloadable

    path = tmp_path / "evil.pt"
    if how == "plain-pickle":              # protocol 5 opcodes: torch's reason is an "Unsupported operand"
        path.write_bytes(pickle.dumps({"x": _CallsOpen()}, protocol=5))
    else:
        torch.save({"x": _CallsOpen()}, path, _use_new_zipfile_serialization=how == "zip")
    with pytest.raises(Exception) as caught:
        torch.load(path, weights_only=True)
    why = why_unloadable(caught.value)
    if how == "plain-pickle":
        assert why == "UnpicklingError: Unsupported operand 149", why
    else:
        assert why.startswith("refused") and "io.open" in why and "nothing in it was run" in why, why
    assert "weights_only" not in why and "\n" not in why, why
    assert not (tmp_path / "never-created").exists()


def test_read_json_names_the_file_and_what_is_wrong(tmp_path):
    from fsgr.errors import DataError
    from fsgr.files import read_json

    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good, "a test file") == {"a": [1, 2]}
    cases = {"absent.json": None, "adir": "dir", "latin1.json": b'{"a": "caf\xe9"}', "broken.json": b'{"a": 1,\n}',
             "deep.json": b"[" * 100_000 + b"]" * 100_000}
    expected = {"absent.json": "absent.json: no such file", "adir": "adir: is a directory, not a test file",
                "latin1.json": "latin1.json: not UTF-8 text", "broken.json": "broken.json: not valid JSON (line 2 "
                "column 1", "deep.json": "deep.json: JSON nested too deeply to be a test file"}
    for name, content in cases.items():
        path = tmp_path / name
        if content == "dir":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        with pytest.raises(DataError) as info:
            read_json(path, "a test file")
        assert expected[name] in str(info.value) and "\n" not in str(info.value)
