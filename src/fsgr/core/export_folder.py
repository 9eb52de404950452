"""The folders `fsgr export` and `Captioner.save_pretrained` write, their manifest, and reading them back.

    fsgr-manifest.json  {"fsgr_export": 1, "format", "complete", "files": {name: {"bytes", "sha256"}}}
    config.json         model_type "fsgr", the resolved config, special ids, sizes, decoding settings
    vocab.json          the vocabulary (itos); concepts.json: the codebook's concept names
    safetensors:        model.safetensors (the model state, no optimiser, no pickle) and README.md (a model card)
    onnx:               encoder.onnx, cross.onnx, decoder_step.onnx (fsgr.export.onnx)

One rule for outputs: an export writes into a new or empty folder, or one an earlier export wrote (it holds the
manifest); anything else is refused before any work, so a user's config.json or README.md is never replaced. The
manifest is written first ("complete": false: the folder is fsgr's from then on, and an interrupted export can be
redone into it) and last with every file's size and SHA-256. Loading checks it: a file missing, truncated, replaced or
edited (two words swapped in vocab.json, a changed image_size) is refused by name. README.md is listed but not
checked: the model card is the user's to edit before uploading.
"""

from __future__ import annotations

# Deferred imports: safetensors is the optional extra fsgr[export], imported when a folder is written or read.

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import yaml

from fsgr.config import to_dict
from fsgr.core.checkpoint import file_sha256
from fsgr.errors import CheckpointError, ConfigError
from fsgr.files import atomic_write

MANIFEST = "fsgr-manifest.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
GRAPHS = ("encoder.onnx", "cross.onnx", "decoder_step.onnx")
METADATA = ("config.json", "vocab.json", "concepts.json")
FILES = {"safetensors": (*METADATA, WEIGHTS, CARD), "onnx": (*GRAPHS, *METADATA)}
UNCHECKED = {CARD}


# ---------------------------------------------------------------------------------------------------------- writing
def claim_folder(out: Path) -> None:
    """Refuse, before any work, an --out that holds anything an export did not write."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a folder to export into")
    if not out.exists() or _manifest_or_none(out) is not None:
        return
    names = sorted(p.name for p in out.iterdir())
    if names:
        shown = ", ".join(names[:5]) + (f" (and {len(names) - 5} more)" if len(names) > 5 else "")
        raise ConfigError(f"{out}: holds files an fsgr export did not write ({shown}); export into a new or empty "
                          f"folder, or one an earlier `fsgr export` wrote")


def begin(out: Path, fmt: str) -> None:
    """Claim `out` for an export of `fmt`: the previous export's files go, an unfinished manifest marks it fsgr's."""
    claim_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = _manifest_or_none(out) or {}
    for name in previous.get("files", {}):
        if name in FILES.get(previous.get("format"), ()):   # only names an export writes, never a path elsewhere
            (out / name).unlink(missing_ok=True)
    _write_json(out / MANIFEST, {"fsgr_export": 1, "format": fmt, "complete": False, "files": {}})


def finish(out: Path, fmt: str) -> list[Path]:
    """The manifest with every file's size and SHA-256: the export is complete. -> the files written."""
    paths = [out / name for name in FILES[fmt]]
    files = {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in paths}
    _write_json(out / MANIFEST, {"fsgr_export": 1, "format": fmt, "complete": True, "files": files})
    return [*paths, out / MANIFEST]


def write_metadata(captioner, out: Path, fmt: str) -> dict:
    """config.json (the resolved config, the decoding settings, the special ids), vocab.json, concepts.json."""
    model = captioner.model
    attn = model.decoder.layers[0].self_attention.attn
    meta = {"model_type": "fsgr", "format": fmt, "architectures": ["FSGRCaptioner"],
            "image_size": captioner.image_size, "resize": captioner.resize,
            "vocab_size": len(captioner.vocab.itos), "pad_id": model.pad_id, "bos_id": model.bos_id,
            "eos_id": model.eos_id, "decoder_max_len": model.decoder.max_len,
            "decoder_layers": len(model.decoder.layers),
            "heads": attn.heads, "d_head": attn.d_head, "decoding": asdict(captioner.settings()),
            "config": to_dict(captioner.cfg)}
    _write_json(out / "config.json", meta, indent=2)
    _write_json(out / "vocab.json", captioner.vocab.itos)
    _write_json(out / "concepts.json", captioner.codebook_names or [])
    return meta


def save_safetensors(captioner, out: Path, summary: Optional[dict] = None, license: str = "other") -> list[Path]:
    """The Hub-style folder of `fsgr export --format safetensors` and `Captioner.save_pretrained`."""
    st = _safetensors()
    begin(out, "safetensors")
    # independent contiguous copies: safetensors refuses tensors that share storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in captioner.model.state_dict().items()}
    data = st.save(state, metadata={"format": "pt"})   # one key: safetensors orders several differently per run
    atomic_write(out / WEIGHTS, lambda f: f.write(data))    # mode from the umask, as every file fsgr writes
    meta = write_metadata(captioner, out, fmt="safetensors")
    atomic_write(out / CARD, lambda f: f.write(model_card(captioner, meta, summary, license).encode()))
    return finish(out, "safetensors")


def model_card(captioner, meta: dict, summary: Optional[dict], license: str) -> str:
    """README.md: YAML front matter a model hub reads (library, pipeline, license, datasets, metrics and the run's
    test scores as model-index results), what the model is, how to load it, the training config."""
    cfg = meta["config"]
    scores = {k: float(v) for k, v in ((summary or {}).get("test") or {}).items() if isinstance(v, (int, float))}
    datasets = [dataset_name(cfg["data"])]
    front: dict[str, Any] = {"library_name": "fsgr", "pipeline_tag": "image-to-text", "license": license,
                             "tags": ["image-captioning", "fsgr", "clip"], "datasets": datasets,
                             "metrics": sorted(scores)}
    if scores:
        front["model-index"] = [{"name": "fsgr", "results": [{
            "task": {"type": "image-to-text", "name": "Image Captioning"},
            "dataset": {"type": datasets[0], "name": datasets[0], "split": "test"},
            "metrics": [{"type": name, "name": name, "value": value} for name, value in sorted(scores.items())]}]}]
    table = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(scores.items()))
    results = (f"Test scores of the run (`summary.json`):\n\n| metric | value |\n|---|---|\n{table}\n" if scores
               else "No test scores were recorded for this run.\n")
    concepts = len(captioner.codebook_names or []) or "unnamed"
    return (f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n"
            f"# FSGR image captioner\n\n"
            f'Exported by fsgr (FSGR: "Fully Semantic Gap Recovery for End-to-End Image Captioning").\n'
            f"Input: {meta['image_size']} px images ({meta['resize']} resize); vocabulary of {meta['vocab_size']} "
            f"words; {concepts} semantic concepts. Decoding defaults: {meta['decoding']}.\n\n"
            f"```python\nimport fsgr\ncaptioner = fsgr.Captioner.from_pretrained(\"this/folder\")\n"
            f"print(captioner.caption([\"photo.jpg\"]))\n```\n\n"
            f"## Results\n\n{results}\n"
            f"## Training config\n\n```yaml\n{yaml.safe_dump(cfg, sort_keys=False)}```\n")


def dataset_name(data: dict) -> str:
    """The model card's dataset: the synthetic shapes world, Flickr8k/30k when the annotation file says so, else
    COCO (the M2, COCO and Karpathy formats' usual data)."""
    if data.get("format") == "synthetic":
        return "fsgr-synthetic-shapes"
    source = str(data.get("annotations", "")).lower()
    return next((name for name in ("flickr30k", "flickr8k") if name in source), "coco")


def run_summary(source: Path) -> Optional[dict]:
    """The summary.json of the run a checkpoint belongs to (RUN/checkpoints/X.pt -> RUN/summary.json), or None."""
    path = source.parent.parent / "summary.json"
    if not source.is_file() or not path.is_file():
        return None
    summary = _load_json(path)
    return summary if isinstance(summary, dict) else None


# ---------------------------------------------------------------------------------------------------------- reading
def export_format(folder: Path) -> str:
    """The format an export folder holds, from its manifest (not yet checked: `verify` does that)."""
    return _read_manifest(folder)["format"]


def verify(folder: Path, fmt: Optional[str] = None) -> dict:
    """Check every file of an export folder against its manifest. -> the manifest; CheckpointError naming the file
    that is missing, truncated, replaced or changed."""
    manifest = _read_manifest(folder)
    if fmt is not None and manifest["format"] != fmt:
        raise CheckpointError(f"{folder}: an fsgr {manifest['format']} export, not {fmt}")
    if not manifest.get("complete"):
        raise CheckpointError(f"{folder}: the export into it did not finish; export again")
    files = manifest.get("files")
    absent = [n for n in FILES[manifest["format"]] if not isinstance(files, dict) or n not in files]
    if absent:
        raise CheckpointError(f"{folder / MANIFEST}: does not list {', '.join(absent)}")
    for name in FILES[manifest["format"]]:
        path, record = folder / name, files[name]
        if name in UNCHECKED:
            continue
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (the export wrote it; export again)")
        size = path.stat().st_size
        if size != record.get("bytes"):
            raise CheckpointError(f"{path}: {size:,} bytes where the export wrote {record.get('bytes'):,} "
                                  f"(truncated or replaced)")
        if file_sha256(path) != record.get("sha256"):
            raise CheckpointError(f"{path}: changed since the export (its SHA-256 is not the one in {MANIFEST})")
    return manifest


def read_metadata(folder: Path, fmt: str) -> tuple[dict, list[str], list[str]]:
    """(config.json, the vocabulary's itos, the concept names) of a verified export folder of `fmt`."""
    verify(folder, fmt)
    meta = _load_json(folder / "config.json")
    if not isinstance(meta, dict) or meta.get("model_type") != "fsgr" or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{folder / 'config.json'}: not an fsgr model config")
    lists = [_load_json(folder / name) for name in ("vocab.json", "concepts.json")]
    for name, value in zip(("vocab.json", "concepts.json"), lists):
        if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
            raise CheckpointError(f"{folder / name}: not a JSON list of strings")
    return meta, lists[0], lists[1]


def read_safetensors(folder: Path) -> tuple[dict, list[str], list[str], dict]:
    """-> (resolved config dict, vocabulary itos, codebook names, state dict) of a safetensors export."""
    meta, itos, names = read_metadata(folder, "safetensors")
    st = _safetensors()
    try:
        state = st.load_file(str(folder / WEIGHTS))
    except Exception as exc:  # noqa: BLE001 - safetensors' own errors: name the file, one line
        raise CheckpointError(f"{folder / WEIGHTS}: not a readable safetensors file ({exc})") from None
    return meta["config"], itos, names, state


def folder_sha256(folder: Path) -> str:
    """The identity of an exported model folder: SHA-256 over each file's relative name and SHA-256 (what bulk
    outputs record for `--model DIR`, as they record a checkpoint's file SHA-256)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(folder).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict:
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder (an export folder written by `fsgr export`)"
                              if folder.exists() else f"{folder}: export folder not found")
    manifest = _manifest_or_none(folder)
    if manifest is None:
        raise CheckpointError(f"{folder}: no readable {MANIFEST}: not a folder written by `fsgr export` or "
                              f"`save_pretrained` (or by an fsgr older than the manifest: export it again)")
    if manifest.get("format") not in FILES:
        raise CheckpointError(f"{folder / MANIFEST}: unknown export format {manifest.get('format')!r}")
    return manifest


def _manifest_or_none(folder: Path) -> Optional[dict]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("fsgr_export") == 1 else None


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({' '.join(str(exc).split())})") from None


def _write_json(path: Path, value, indent: Optional[int] = None) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(value, indent=indent).encode()))


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ConfigError("the safetensors format needs the safetensors package: pip install 'fsgr[export]'") \
            from None
    return safetensors.torch
