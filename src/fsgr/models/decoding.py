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
included; 0 = the plain sum, > 0 favours longer captions), and `seq_logprob` stays the plain sum. Greedy and sampling
take `length_penalty` for a uniform signature; it ranks nothing there. `DecodeSettings` bundles them with the beam size
and `decode()` runs greedy (beam 1) or beam search from it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, fields

import torch

from fsgr.errors import ConfigError


@dataclass(frozen=True)
class DecodeSettings:
    """Every knob of caption decoding. Defaults: beam 5, 20 tokens, no controls (the M2/REF search)."""

    beam_size: int = 5
    max_len: int = 20             # generated tokens, <eos> included
    min_len: int = 0              # words before <eos> may end the caption
    length_penalty: float = 0.0   # beam ranking: sum log p / length**length_penalty
    no_repeat_ngram: int = 0      # ban words that repeat an n-gram of the caption (0: off)

    def __post_init__(self):
        if self.beam_size < 1:
            raise ConfigError(f"beam size {self.beam_size}: must be >= 1 (1 = greedy)")
        if self.max_len < 1:
            raise ConfigError(f"max_len {self.max_len}: must be >= 1")
        if not 0 <= self.min_len <= self.max_len:
            raise ConfigError(f"min_len {self.min_len}: must be between 0 and max_len ({self.max_len})")
        if not math.isfinite(self.length_penalty):
            raise ConfigError(f"length_penalty {self.length_penalty}: must be a finite number")
        if self.no_repeat_ngram < 0:
            raise ConfigError(f"no_repeat_ngram {self.no_repeat_ngram}: must be >= 0 (0 = off)")

    @classmethod
    def from_config(cls, section, **overrides) -> "DecodeSettings":
        """From any object with these attribute names (the `eval` config section); None overrides are ignored."""
        values = {f.name: getattr(section, f.name) for f in fields(cls) if hasattr(section, f.name)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def controls(self) -> dict:
        return {"min_len": self.min_len, "length_penalty": self.length_penalty, "no_repeat_ngram": self.no_repeat_ngram}


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
           length_penalty: float = 0.0, no_repeat_ngram: int = 0) -> torch.Tensor:
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
           min_len: int = 0, length_penalty: float = 0.0,
           no_repeat_ngram: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `num_samples` captions per image from softmax(logits / temperature), renormalised over the words the
    controls allow.

    -> tokens (B, n, max_len) and the differentiable log-probs of the drawn tokens under the distribution they were
    drawn from (B, n, max_len), 0 after <eos> (SCST "standard"). Gradients flow unless the caller disables them.
    use_cache=False re-runs the decoder over the whole prefix at each step (the baseline of bench_train's SCST step)."""
    _check(model, max_len)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    memory = encoded.memory
    device = memory.device
    b, n = memory.shape[0], num_samples
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
        word = torch.multinomial(logprobs.detach().exp(), 1).squeeze(1)
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


def decode(model, encoded, settings: DecodeSettings, return_all: bool = False) -> BeamResult:
    """Greedy (beam 1) or beam search with every control of `settings`; BeamResult with k = 1 for greedy."""
    if settings.beam_size == 1:
        tokens, lps = _greedy(model, encoded, settings.max_len, min_len=settings.min_len,
                              no_repeat_ngram=settings.no_repeat_ngram)
        result = BeamResult(tokens=tokens[:, None], token_logprobs=lps[:, None], seq_logprob=lps.sum(-1)[:, None])
        if return_all:
            return result
        return BeamResult(tokens=tokens, token_logprobs=lps, seq_logprob=result.seq_logprob[:, 0])
    return beam_search(model, encoded, beam_size=settings.beam_size, max_len=settings.max_len, return_all=return_all,
                       **settings.controls())


@torch.no_grad()
def decode_images(model, images: torch.Tensor, vocab, beam_size: int, max_len: int,
                  controls: dict | None = None) -> list[str]:
    """Captions (the best beam; greedy when beam_size <= 1) of preprocessed images already on the model's device.
    `controls`: min_len / length_penalty / no_repeat_ngram (DecodeSettings). Mixed precision is the caller's: wrap
    the call in `fsgr.core.device.autocast`."""
    settings = DecodeSettings(beam_size=beam_size, max_len=max_len, **(controls or {}))
    tokens = decode(model, model.encode(images), settings).tokens
    return [vocab.decode(row, collapse_repeats=True) for row in tokens.cpu().tolist()]
