"""Caption decoding: greedy, batched beam search and sampling, on the decoder's explicit key/value cache.

`model` is anything with `.decoder` (`fsgr.models.decoder.Decoder`) and `.bos_id/.eos_id/.pad_id` (the captioner);
`encoded` anything with `.memory` (B, P, d) and `.memory_pos` (broadcastable to memory). The model's train/eval mode
is the caller's choice (SCST decodes in train mode). Outputs hold the generated tokens WITHOUT <bos>, <eos> included,
<pad> after it (<pad> and <bos> are never generated), always padded to `max_len` columns (token log-probs 0 there).
Consecutive-duplicate removal belongs to `fsgr.data.vocab.Vocab.decode(ids, collapse_repeats=True)`, not here.

Beam search follows the M2 Transformer's: no length penalty; a finished beam is carried on with <pad> at an
unchanged score (every other continuation is -inf); beam indices use floor division (M2's `/` became true division
in torch 1.6, giving float indices); it stops early once every beam of every image has ended. `use_cache=False`
re-runs the decoder over the whole prefix at each step (the baseline of benchmarks/bench_decode.py and the reference
for the cache-equality test).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


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


def _check(model, max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if max_len > model.decoder.max_len:
        raise ValueError(f"max_len {max_len} exceeds the decoder's position table ({model.decoder.max_len})")


def greedy(model, encoded, max_len: int = 20, use_cache: bool = True) -> torch.Tensor:
    """Argmax decoding -> tokens (B, max_len). Runs under torch.inference_mode."""
    _check(model, max_len)
    with torch.inference_mode():
        memory = encoded.memory
        b = memory.shape[0]
        stepper = _Stepper(model.decoder, memory, encoded.memory_pos, use_cache)
        last = torch.full((b,), model.bos_id, dtype=torch.long, device=memory.device)
        finished = torch.zeros(b, dtype=torch.bool, device=memory.device)
        out = []
        for _ in range(max_len):
            word = _no_specials(model, stepper.step(last)).argmax(dim=-1)
            word = word.masked_fill(finished, model.pad_id)
            out.append(word)
            finished = finished | (word == model.eos_id)
            if bool(finished.all()):
                break
            last = word
        return _pad_to(torch.stack(out, dim=1), max_len, model.pad_id)


def beam_search(model, encoded, beam_size: int = 5, max_len: int = 20, return_all: bool = False,
                use_cache: bool = True, grad: bool = False) -> BeamResult:
    """Batched beam search. grad=False runs under torch.inference_mode; grad=True keeps the token log-probs
    differentiable (SCST beam mode: all k beams with return_all=True)."""
    _check(model, max_len)
    ctx = contextlib.nullcontext() if grad else torch.inference_mode()
    with ctx:
        return _beam_search(model, encoded, beam_size, max_len, return_all, use_cache)


def _beam_search(model, encoded, k: int, max_len: int, return_all: bool, use_cache: bool) -> BeamResult:
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
    last = torch.full((b * k,), model.bos_id, dtype=torch.long, device=device)
    for _ in range(max_len):
        logprobs = _no_specials(model, stepper.step(last)).view(b, k, vocab)
        logprobs = torch.where(finished[..., None], pad_only, logprobs)
        candidates = (scores[..., None] + logprobs).view(b, k * vocab)
        scores, flat = candidates.topk(k, dim=1)                               # sorted, best first
        beam = torch.div(flat, vocab, rounding_mode="floor")                   # floor, not true, division
        word = flat - beam * vocab
        word_lp = logprobs.view(b, k * vocab).gather(1, flat)
        t = tokens.shape[-1]
        tokens = torch.cat([tokens.gather(1, beam[..., None].expand(b, k, t)), word[..., None]], dim=-1)
        token_lps = torch.cat([token_lps.gather(1, beam[..., None].expand(b, k, t)), word_lp[..., None]], dim=-1)
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


def sample(model, encoded, num_samples: int = 5, max_len: int = 20,
           temperature: float = 1.0, use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `num_samples` captions per image from softmax(logits / temperature).

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


@torch.no_grad()
def decode_images(model, images: torch.Tensor, vocab, beam_size: int, max_len: int) -> list[str]:
    """Captions (the best beam; greedy when beam_size <= 1) of preprocessed images already on the model's device.
    Mixed precision is the caller's: wrap the call in `fsgr.core.device.autocast`."""
    encoded = model.encode(images)
    if beam_size <= 1:
        tokens = greedy(model, encoded, max_len=max_len)
    else:
        tokens = beam_search(model, encoded, beam_size=beam_size, max_len=max_len).tokens
    return [vocab.decode(row, collapse_repeats=True) for row in tokens.cpu().tolist()]
