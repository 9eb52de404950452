"""Caption decoding: greedy, batched beam search and sampling, on the decoder's explicit key/value cache.

`model` is anything with `.decoder` (`fsgr.models.decoder.Decoder`) and `.bos_id/.eos_id/.pad_id` (the captioner);
`encoded` anything with `.memory` (B, P, d) and `.memory_pos` (broadcastable to memory). The model's train/eval mode
is the caller's choice (SCST decodes in train mode). Outputs hold the generated tokens WITHOUT <bos>, <eos> included,
<pad> after it (<pad> and <bos> are never generated), always padded to `max_len` columns (token log-probs 0 there).
Consecutive-duplicate removal belongs to `fsgr.data.vocab.Vocab.decode(ids, collapse_repeats=True)`, not here.

Beam search follows the M2 Transformer's: no length penalty; a finished beam is carried on with <pad> at an
unchanged score (every other continuation is -inf); beam indices use floor division (M2's `/` became true division in torch 1.6); it stops early once every
beam of every image has ended. `use_cache=False` re-runs the decoder over the whole prefix at each step (the baseline
of benchmarks/bench_decode.py and the reference for the cache-equality test).

Controls (every search; the defaults change nothing, so captions are the reference's): `min_len` bans <eos> until that
many words were generated; `no_repeat_ngram=n` bans a word that would complete an n-gram already in the caption (HF's
rule); `length_penalty=a` ranks beam candidates by summed log-prob / length**a (length in generated tokens, <eos>
included; 0 = the plain sum, > 0 favours longer captions, < 0 shorter ones), and `seq_logprob` stays the plain sum.
Only beam search ranks, so `length_penalty` is a beam-search control: greedy and sampling do not take it.
`DecodeSettings` bundles every control, checks every value (the one checker of the CLI, the server and the Python API)
and `decode()` runs greedy (beam 1), beam search or sampling from it.

Sampling (`do_sample`) draws from softmax(logits / temperature), restricted by the controls and then by `top_k` /
`top_p` (HF's order). `decode()` draws with one local `torch.Generator` per image, each seeded with `seed` (a fresh
random seed when None): an image's captions depend on the image, the settings and the seed only, not on the batch it
was decoded in, and no global RNG state is touched. `sample()` without generators (SCST) draws from the global RNG.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Optional

import torch

from fsgr.errors import ConfigError

# Hugging Face generate()'s names -> DecodeSettings fields (fsgr's own names, which the eval config section uses)
HF_NAMES = {"num_beams": "beam_size", "max_new_tokens": "max_len", "min_new_tokens": "min_len",
            "no_repeat_ngram_size": "no_repeat_ngram"}
LENGTH_PENALTY_RANGE = (-10.0, 10.0)   # beyond, length**a leaves float32 for long captions (30 made scores NaN)
TEMPERATURE_RANGE = (0.01, 100.0)      # beyond, logits / temperature leave float32 (every word -inf or NaN)
MAX_SAMPLES = 100                      # num_return_sequences when sampling (rows decoded per image)
SPECIALS = 2                           # <pad> and <bos>: in the vocabulary, never generated


class DecodingValueError(ConfigError):
    """A decoding control out of its range: "field value: reason" (the CLI names its flag instead of the field)."""

    def __init__(self, field: str, value, reason: str):
        super().__init__(f"{field} {value}: {reason}")
        self.field, self.value, self.reason = field, value, reason


@dataclass(frozen=True)
class DecodeSettings:
    """Every knob of caption decoding. Defaults: beam 5, 20 tokens, no controls (the M2/REF search)."""

    beam_size: int = 5
    max_len: int = 20             # generated tokens, <eos> included
    min_len: int = 0              # words before <eos> may end the caption
    length_penalty: float = 0.0   # beam ranking: sum log p / length**length_penalty
    no_repeat_ngram: int = 0      # ban words that repeat an n-gram of the caption (0: off)
    do_sample: bool = False       # draw captions instead of searching (beam_size must be 1)
    temperature: float = 1.0      # sampling: softmax(logits / temperature)
    top_k: int = 0                # sampling: only the k most likely words (0: all)
    top_p: float = 1.0            # sampling: only the most likely words holding this probability (1: all)
    num_return_sequences: int = 1   # captions returned per image: the best beams, or independent samples
    seed: Optional[int] = None    # sampling: the same seed gives the same captions (None: fresh randomness)

    def __post_init__(self):
        for f in fields(self):         # a Python caller can pass anything: "5", 2.5, True
            value = getattr(self, f.name)
            if f.type == "bool":
                ok, what = isinstance(value, bool), "true or false"
            elif f.type == "float":
                ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
            else:
                ok = (value is None and f.name == "seed") or (isinstance(value, int) and not isinstance(value, bool))
                what = "an integer"
            if not ok:
                raise DecodingValueError(f.name, repr(value), f"must be {what}")
        if self.beam_size < 1:
            raise DecodingValueError("beam_size", self.beam_size, "must be >= 1 (1 = greedy)")
        if self.max_len < 1:
            raise DecodingValueError("max_len", self.max_len, "must be >= 1")
        if not 0 <= self.min_len <= self.max_len:
            raise DecodingValueError("min_len", self.min_len, f"must be between 0 and max_len ({self.max_len})")
        low, high = LENGTH_PENALTY_RANGE
        if not low <= self.length_penalty <= high:     # NaN fails too
            raise DecodingValueError("length_penalty", self.length_penalty, f"must be between {low:g} and {high:g}")
        if self.no_repeat_ngram < 0:
            raise DecodingValueError("no_repeat_ngram", self.no_repeat_ngram, "must be >= 0 (0 = off)")
        if self.num_return_sequences < 1:
            raise DecodingValueError("num_return_sequences", self.num_return_sequences, "must be >= 1")
        if self.do_sample:
            self._check_sampling()
        else:
            changed = [f.name for f in fields(self) if f.name in ("temperature", "top_k", "top_p", "seed")
                       and getattr(self, f.name) != f.default]
            if changed:
                raise DecodingValueError(changed[0], getattr(self, changed[0]),
                                         "a sampling control; it needs do_sample")
            if self.num_return_sequences > self.beam_size:
                raise DecodingValueError("num_return_sequences", self.num_return_sequences,
                                         f"at most the beam size ({self.beam_size}) without do_sample")

    def _check_sampling(self) -> None:
        if self.beam_size != 1:
            raise DecodingValueError("beam_size", self.beam_size, "must be 1 with do_sample (sampling has no beam)")
        low, high = TEMPERATURE_RANGE
        if not low <= self.temperature <= high:
            raise DecodingValueError("temperature", self.temperature, f"must be between {low:g} and {high:g}")
        if self.top_k < 0:
            raise DecodingValueError("top_k", self.top_k, "must be >= 0 (0 = every word)")
        if not 0 < self.top_p <= 1:
            raise DecodingValueError("top_p", self.top_p, "must be above 0 and at most 1 (1 = every word)")
        if self.num_return_sequences > MAX_SAMPLES:
            raise DecodingValueError("num_return_sequences", self.num_return_sequences,
                                     f"at most {MAX_SAMPLES} samples")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise DecodingValueError("seed", self.seed, "must be between 0 and 2**63 - 1")

    def check_model(self, vocab_size: int, decoder_max_len: int) -> "DecodeSettings":
        """Refuse what this model cannot decode: more beams (or top_k words) than the words it can generate (its
        vocabulary less <pad> and <bos>), captions longer than its position table. -> self."""
        words = vocab_size - SPECIALS
        if self.beam_size > words:
            raise DecodingValueError("beam_size", self.beam_size, f"larger than the {words} words this model can "
                                     f"generate (a vocabulary of {vocab_size} with <pad> and <bos>)")
        if self.top_k > words:
            raise DecodingValueError("top_k", self.top_k, f"larger than the {words} words this model can generate")
        if self.max_len > decoder_max_len:
            raise DecodingValueError("max_len", self.max_len,
                                     f"exceeds this model's decoder.max_len ({decoder_max_len})")
        if self.no_repeat_ngram == 1 and self.min_len >= words:     # every word used once, <eos> still banned
            raise DecodingValueError("min_len", self.min_len, f"with no_repeat_ngram 1: more words than the "
                                     f"{words - 1} this model has")
        return self

    @classmethod
    def from_config(cls, section, **overrides) -> "DecodeSettings":
        """From any object with these attribute names (the `eval` config section), then `overrides` (DecodeSettings
        fields or Hugging Face names, None = not given). Sampling without a given beam size samples (beam 1) instead
        of taking the section's beam size."""
        given = named_fields(overrides)
        values = {f.name: getattr(section, f.name) for f in fields(cls) if hasattr(section, f.name)}
        if given.get("do_sample") and "beam_size" not in given:
            values["beam_size"] = 1
        return cls(**{**values, **given})

    def controls(self) -> dict:
        return {"min_len": self.min_len, "length_penalty": self.length_penalty, "no_repeat_ngram": self.no_repeat_ngram}


def check_eval_section(section, vocab_size: Optional[int] = None, decoder_max_len: Optional[int] = None) -> None:
    """The `eval` config section's decoding values, checked by DecodeSettings (and against a model's vocabulary and
    decoder when their sizes are given), so that a run refuses them where they enter, not at its first validation;
    a refusal names the eval.* key."""
    try:
        settings = DecodeSettings.from_config(section)
        if vocab_size is not None:
            settings.check_model(vocab_size, decoder_max_len)
    except DecodingValueError as exc:
        raise ConfigError(f"eval.{exc.field}={exc.value}: {exc.reason}") from None


def named_fields(overrides: dict) -> dict:
    """Decoding keywords (DecodeSettings fields or HF_NAMES) -> DecodeSettings fields; None values dropped. An unknown
    name or one given under both of its names is a TypeError, as for any keyword argument."""
    known = {f.name for f in fields(DecodeSettings)}
    out: dict = {}
    for name, value in overrides.items():
        field_name = HF_NAMES.get(name, name)
        if field_name not in known:
            raise TypeError(f"unknown decoding argument {name!r}")
        if value is None:
            continue
        if field_name in out:
            raise TypeError(f"{name!r} given twice (also as {field_name!r} or its Hugging Face name)")
        out[field_name] = value
    return out


@dataclass
class BeamResult:
    tokens: torch.Tensor            # (B, T) best beam, or (B, k, T) with return_all (best first)
    token_logprobs: torch.Tensor    # same shape, fp32; log-prob of each generated token, 0 after <eos>
    seq_logprob: torch.Tensor       # (B,) or (B, k): summed log-probs (the beam score)


class _Stepper:
    """One incremental decoding state over N rows, with or without the key/value cache."""

    def __init__(self, decoder, memory: torch.Tensor, memory_pos: torch.Tensor, use_cache: bool):
        self.decoder = decoder
        self.use_cache = use_cache
        if use_cache:
            self.cache = decoder.init_cache(memory, memory_pos)
        else:
            self.memory, self.memory_pos = memory, memory_pos
            self.history = memory.new_zeros(memory.shape[0], 0, dtype=torch.long)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N,) -> next-token log-probs (N, V)."""
        if self.use_cache:
            logprobs, self.cache = self.decoder.step(tokens, self.cache)
            return logprobs
        self.history = torch.cat([self.history, tokens[:, None]], dim=1)
        return self.decoder(self.history, self.memory, self.memory_pos)[:, -1]

    def select(self, rows: torch.Tensor, cross: bool = False) -> "_Stepper":
        if self.use_cache:
            self.cache = self.cache.select(rows, cross=cross)
        else:
            self.history = self.history.index_select(0, rows)
            if cross:
                self.memory = self.memory.index_select(0, rows)
        return self


def _pad_to(x: torch.Tensor, length: int, value) -> torch.Tensor:
    missing = length - x.shape[-1]
    if missing <= 0:
        return x
    return torch.cat([x, x.new_full((*x.shape[:-1], missing), value)], dim=-1)


def _no_specials(model, logprobs: torch.Tensor) -> torch.Tensor:
    """<pad> and <bos> are never generated (REF could, in principle: a <pad> mid-caption would be masked out of the
    decoder's own context). No renormalisation: scores stay the model's log-probs."""
    specials = torch.tensor([model.pad_id, model.bos_id], device=logprobs.device)
    return logprobs.index_fill(-1, specials, float("-inf"))


def _constrain(logprobs: torch.Tensor, history: torch.Tensor, eos_id: int, min_len: int,
               no_repeat_ngram: int) -> torch.Tensor:
    """logprobs (N, V) of step t = history.shape[1] (history (N, t): the words so far) -> with the banned words at
    -inf. Returns the input itself when nothing is banned (the default controls touch no value)."""
    t = history.shape[1]
    if t < min_len:
        logprobs = logprobs.index_fill(-1, torch.tensor([eos_id], device=logprobs.device), float("-inf"))
    n = no_repeat_ngram
    if n and t >= n:
        windows = history.unfold(1, n, 1)                                          # (N, t-n+1, n) every n-gram
        same_prefix = (windows[:, :, :-1] == history[:, t - n + 1:][:, None]).all(-1)   # (N, t-n+1)
        banned = torch.zeros(logprobs.shape, dtype=torch.long, device=logprobs.device)
        banned.scatter_add_(1, windows[:, :, -1], same_prefix.long())              # the word that would repeat it
        logprobs = logprobs.masked_fill(banned > 0, float("-inf"))
    return logprobs


def _check(model, max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if max_len > model.decoder.max_len:
        raise ValueError(f"max_len {max_len} exceeds the decoder's position table ({model.decoder.max_len})")


def greedy(model, encoded, max_len: int = 20, use_cache: bool = True, min_len: int = 0,
           no_repeat_ngram: int = 0) -> torch.Tensor:
    """Argmax decoding -> tokens (B, max_len). Runs under torch.inference_mode."""
    return _greedy(model, encoded, max_len, use_cache, min_len, no_repeat_ngram)[0]


def _greedy(model, encoded, max_len: int, use_cache: bool = True, min_len: int = 0, no_repeat_ngram: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """-> tokens (B, max_len) and their log-probs (B, max_len), 0 after <eos>."""
    _check(model, max_len)
    with torch.inference_mode():
        memory = encoded.memory
        b = memory.shape[0]
        stepper = _Stepper(model.decoder, memory, encoded.memory_pos, use_cache)
        last = torch.full((b,), model.bos_id, dtype=torch.long, device=memory.device)
        finished = torch.zeros(b, dtype=torch.bool, device=memory.device)
        out, lps = [], []
        for _ in range(max_len):
            logprobs = _no_specials(model, stepper.step(last))
            if min_len or no_repeat_ngram:
                history = torch.stack(out, dim=1) if out else last.new_zeros(b, 0)
                logprobs = _constrain(logprobs, history, model.eos_id, min_len, no_repeat_ngram)
            word = logprobs.argmax(dim=-1)
            word = word.masked_fill(finished, model.pad_id)
            lps.append(logprobs.gather(1, word[:, None])[:, 0].masked_fill(finished, 0.0))
            out.append(word)
            finished = finished | (word == model.eos_id)
            if bool(finished.all()):
                break
            last = word
        return (_pad_to(torch.stack(out, dim=1), max_len, model.pad_id),
                _pad_to(torch.stack(lps, dim=1), max_len, 0.0))


def beam_search(model, encoded, beam_size: int = 5, max_len: int = 20, return_all: bool = False,
                use_cache: bool = True, grad: bool = False, min_len: int = 0, length_penalty: float = 0.0,
                no_repeat_ngram: int = 0) -> BeamResult:
    """Batched beam search. grad=False runs under torch.inference_mode; grad=True keeps the token log-probs
    differentiable (SCST beam mode: all k beams with return_all=True)."""
    _check(model, max_len)
    ctx = contextlib.nullcontext() if grad else torch.inference_mode()
    with ctx:
        return _beam_search(model, encoded, beam_size, max_len, return_all, use_cache, min_len, length_penalty,
                            no_repeat_ngram)


def _beam_search(model, encoded, k: int, max_len: int, return_all: bool, use_cache: bool, min_len: int,
                 length_penalty: float, no_repeat_ngram: int) -> BeamResult:
    memory = encoded.memory
    device = memory.device
    b = memory.shape[0]
    vocab = model.decoder.vocab_size
    if not 1 <= k <= vocab:
        raise ValueError(f"beam size {k} must be between 1 and the vocabulary size {vocab}")
    image_rows = torch.arange(b, device=device)
    stepper = _Stepper(model.decoder, memory, encoded.memory_pos, use_cache)
    stepper.select(image_rows.repeat_interleave(k), cross=True)           # k rows per image
    # only beam 0 is live at t=0, so the first top-k picks k distinct words from it
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(b, k, dtype=torch.bool, device=device)
    # a finished beam may only continue with <pad>, at log-prob 0 (its score is kept)
    pad_only = torch.full((vocab,), float("-inf"), device=device)
    pad_only[model.pad_id] = 0.0
    tokens = torch.zeros(b, k, 0, dtype=torch.long, device=device)
    token_lps = torch.zeros(b, k, 0, device=device)
    lengths = torch.zeros(b, k, device=device)                                 # generated tokens, <eos> included
    last = torch.full((b * k,), model.bos_id, dtype=torch.long, device=device)
    for _ in range(max_len):
        logprobs = _no_specials(model, stepper.step(last))
        logprobs = _constrain(logprobs, tokens.reshape(b * k, tokens.shape[-1]), model.eos_id, min_len, no_repeat_ngram)
        logprobs = torch.where(finished[..., None], pad_only, logprobs.view(b, k, vocab))
        candidates = (scores[..., None] + logprobs).view(b, k * vocab)
        if length_penalty:
            grown = torch.where(finished, lengths, lengths + 1)                 # a finished beam keeps its length
            ranked = (candidates.view(b, k, vocab) / grown[..., None] ** length_penalty).view(b, k * vocab)
            ranked = ranked.masked_fill(candidates == float("-inf"), float("-inf"))   # banned stays banned (a < 0)
            flat = ranked.topk(k, dim=1).indices
            scores = candidates.gather(1, flat)
        else:
            scores, flat = candidates.topk(k, dim=1)                           # sorted, best first
        beam = torch.div(flat, vocab, rounding_mode="floor")                   # floor, not true, division
        word = flat - beam * vocab
        word_lp = logprobs.view(b, k * vocab).gather(1, flat)
        t = tokens.shape[-1]
        tokens = torch.cat([tokens.gather(1, beam[..., None].expand(b, k, t)), word[..., None]], dim=-1)
        token_lps = torch.cat([token_lps.gather(1, beam[..., None].expand(b, k, t)), word_lp[..., None]], dim=-1)
        lengths = lengths.gather(1, beam) + (~finished.gather(1, beam)).float()
        finished = finished.gather(1, beam) | (word == model.eos_id)
        if bool(finished.all()):
            break
        stepper.select((image_rows[:, None] * k + beam).reshape(-1))
        last = word.reshape(-1)
    tokens = _pad_to(tokens, max_len, model.pad_id)
    token_lps = _pad_to(token_lps, max_len, 0.0)
    if return_all:
        return BeamResult(tokens=tokens, token_logprobs=token_lps, seq_logprob=scores)
    return BeamResult(tokens=tokens[:, 0], token_logprobs=token_lps[:, 0], seq_logprob=scores[:, 0])


def sample(model, encoded, num_samples: int = 5, max_len: int = 20, temperature: float = 1.0, use_cache: bool = True,
           min_len: int = 0, no_repeat_ngram: int = 0, top_k: int = 0, top_p: float = 1.0,
           generators: Optional[list[torch.Generator]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `num_samples` captions per image from softmax(logits / temperature), renormalised over the words the
    controls allow, then over the `top_k` most likely ones and the most likely ones holding `top_p` of the probability.

    -> tokens (B, n, max_len) and the differentiable log-probs of the drawn tokens under the distribution they were
    drawn from (B, n, max_len), 0 after <eos> (SCST "standard"). Gradients flow unless the caller disables them.
    `generators`: one per image (its n draws at each step come from it alone); None: torch.multinomial on the global
    RNG. use_cache=False re-runs the decoder over the whole prefix at each step (the baseline of bench_train's SCST
    step)."""
    _check(model, max_len)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    memory = encoded.memory
    device = memory.device
    b, n = memory.shape[0], num_samples
    if generators is not None and len(generators) != b:
        raise ValueError(f"{len(generators)} generators for {b} images")
    stepper = _Stepper(model.decoder, memory, encoded.memory_pos, use_cache)
    stepper.select(torch.arange(b, device=device).repeat_interleave(n), cross=True)
    last = torch.full((b * n,), model.bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(b * n, dtype=torch.bool, device=device)
    words, lps = [], []
    for _ in range(max_len):
        logprobs = _no_specials(model, stepper.step(last))
        if temperature != 1.0:
            logprobs = torch.log_softmax(logprobs / temperature, dim=-1)
        if min_len or no_repeat_ngram:
            history = torch.stack(words, dim=1) if words else last.new_zeros(b * n, 0)
            logprobs = torch.log_softmax(_constrain(logprobs, history, model.eos_id, min_len, no_repeat_ngram), -1)
        if top_k or top_p < 1:
            logprobs = torch.log_softmax(_keep_most_likely(logprobs, top_k, top_p), -1)
        if generators is None:
            word = torch.multinomial(logprobs.detach().exp(), 1).squeeze(1)
        else:
            word = _draw(logprobs.detach().exp(), generators, n)
        word = word.masked_fill(finished, model.pad_id)
        lp = logprobs.gather(1, word[:, None]).squeeze(1).masked_fill(finished, 0.0)
        words.append(word)
        lps.append(lp)
        finished = finished | (word == model.eos_id)
        if bool(finished.all()):
            break
        last = word
    tokens = _pad_to(torch.stack(words, dim=1), max_len, model.pad_id).view(b, n, max_len)
    token_lps = _pad_to(torch.stack(lps, dim=1), max_len, 0.0).view(b, n, max_len)
    return tokens, token_lps


def _keep_most_likely(logprobs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """logprobs (N, V) with every word outside the top_k (0: no limit) and outside the smallest most-likely set
    holding top_p of the probability set to -inf (HF's top-k then top-p; the most likely word always stays)."""
    if top_k:
        kth = logprobs.topk(top_k, dim=-1).values[:, -1:]
        logprobs = logprobs.masked_fill(logprobs < kth, float("-inf"))
    if top_p < 1:
        ranked, order = logprobs.sort(dim=-1, descending=True)
        probs = torch.softmax(ranked, dim=-1)
        beyond = probs.cumsum(-1) - probs >= top_p         # the more likely words already hold top_p
        drop = torch.zeros_like(beyond).scatter(-1, order, beyond)
        logprobs = logprobs.masked_fill(drop, float("-inf"))
    return logprobs


def _draw(probs: torch.Tensor, generators: list[torch.Generator], n: int) -> torch.Tensor:
    """One word per row of probs (B * n, V) by inverse CDF, the n rows of image i from uniforms of generators[i]."""
    u = torch.cat([torch.rand(n, generator=g, device=g.device) for g in generators]).to(probs.device)
    cdf = probs.float().cumsum(-1)
    # the first word whose cumulative probability exceeds u: never a word of probability 0
    return torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(1).clamp_max(probs.shape[1] - 1)


def seeded_generators(seed: Optional[int], count: int, device: torch.device) -> list[torch.Generator]:
    """`count` local generators on `device`, each seeded with `seed` (None: each with fresh OS randomness)."""
    out = []
    for _ in range(count):
        g = torch.Generator(device=device)
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
        out.append(g)
    return out


def decode(model, encoded, settings: DecodeSettings, return_all: bool = False) -> BeamResult:
    """Greedy (beam 1), beam search or sampling (settings.do_sample: num_return_sequences samples per image, in the
    order drawn) with every control of `settings`; a BeamResult with k = 1 for greedy, k = the number of samples for
    sampling. Runs under torch.inference_mode."""
    if settings.do_sample:
        memory = encoded.memory
        with torch.inference_mode():
            tokens, lps = sample(model, encoded, settings.num_return_sequences, settings.max_len,
                                 settings.temperature, min_len=settings.min_len,
                                 no_repeat_ngram=settings.no_repeat_ngram, top_k=settings.top_k, top_p=settings.top_p,
                                 generators=seeded_generators(settings.seed, memory.shape[0], memory.device))
        result = BeamResult(tokens=tokens, token_logprobs=lps, seq_logprob=lps.sum(-1))
    elif settings.beam_size == 1:
        tokens, lps = _greedy(model, encoded, settings.max_len, min_len=settings.min_len,
                              no_repeat_ngram=settings.no_repeat_ngram)
        result = BeamResult(tokens=tokens[:, None], token_logprobs=lps[:, None], seq_logprob=lps.sum(-1)[:, None])
    else:
        return beam_search(model, encoded, beam_size=settings.beam_size, max_len=settings.max_len,
                           return_all=return_all, **settings.controls())
    if return_all:
        return result
    return BeamResult(tokens=result.tokens[:, 0], token_logprobs=result.token_logprobs[:, 0],
                      seq_logprob=result.seq_logprob[:, 0])


@torch.no_grad()
def decode_images(model, images: torch.Tensor, vocab, beam_size: int, max_len: int,
                  controls: dict | None = None, patch_concepts: torch.Tensor | None = None) -> list[str]:
    """Captions (the best beam; greedy when beam_size <= 1) of preprocessed images already on the model's device.
    `controls`: min_len / length_penalty / no_repeat_ngram (DecodeSettings); `patch_concepts`: the images' per-patch
    concepts, for a model.semantic.oracle model. Mixed precision is the caller's: wrap the call in
    `fsgr.core.device.autocast`."""
    settings = DecodeSettings(beam_size=beam_size, max_len=max_len, **(controls or {}))
    tokens = decode(model, model.encode(images, patch_concepts=patch_concepts), settings).tokens
    return [vocab.decode(row, collapse_repeats=True) for row in tokens.cpu().tolist()]
