import numpy as np
import pytest
import torch

from fsgr.data.batch import CaptionBatch, EvalBatch
from fsgr.data.datasets import (CaptionDataset, EvalDataset, ResumableSampler, collate_captions, load_patch_labels,
                                make_loader)
from fsgr.data.readers import by_split, read_m2
from fsgr.data.records import ImageRecord
from fsgr.data.vocab import Vocab, vocab_from_records
from fsgr.errors import DataError


@pytest.fixture
def train(m2_dataset):
    ann, images, info = m2_dataset
    recs = read_m2(ann, images)
    vocab = vocab_from_records(recs, ("train",), min_freq=1)
    return by_split(recs, "train"), vocab


def test_caption_level_one_item_per_caption(train):
    recs, vocab = train
    ds = CaptionDataset(recs, vocab, image_size=32, batching="caption")
    assert len(ds) == ds.num_captions == 2 * len(recs)
    batch = collate_captions([ds[0], ds[1], ds[2]])
    assert isinstance(batch, CaptionBatch)
    assert batch.images.shape == (3, 3, 32, 32)
    assert batch.image_index.tolist() == [0, 1, 2]
    assert batch.image_ids == [recs[0].image_id, recs[0].image_id, recs[1].image_id]
    t = batch.tokens
    assert t[:, 0].tolist() == [vocab.bos_id] * 3
    # each row: <bos> words <eos> <pad>..., and decodes back to the tokenised caption
    for row, (ri, ci) in enumerate([(0, 0), (0, 1), (1, 0)]):
        words = " ".join(w for w in recs[ri].captions[ci].lower().replace(".", "").split())
        assert vocab.decode(t[row].tolist(), collapse_repeats=False) == words
        n = (t[row] != vocab.pad_id).sum().item()
        assert t[row, n - 1] == vocab.eos_id and (t[row, n:] == vocab.pad_id).all()
    assert batch.references[0] == list(recs[0].captions)


def test_image_level_one_item_per_image_with_all_captions(train):
    recs, vocab = train
    ds = CaptionDataset(recs, vocab, image_size=32, batching="image")
    assert len(ds) == len(recs)
    batch = collate_captions([ds[0], ds[3]])
    assert batch.images.shape == (2, 3, 32, 32)
    assert batch.num_captions == 4 and batch.image_index.tolist() == [0, 0, 1, 1]
    assert batch.image_ids == [recs[0].image_id, recs[3].image_id]
    # same caption rows as caption-level items
    cap = CaptionDataset(recs, vocab, image_size=32, batching="caption")
    assert torch.equal(torch.as_tensor(cap[6]["tokens"][0], dtype=torch.long), batch.tokens[2, :len(cap[6]["tokens"][0])])


def test_collate_checks_ids_and_length_on_cpu(train):
    recs, vocab = train
    ds = CaptionDataset(recs, vocab, image_size=16, batching="caption")
    item = ds[0]
    bad = dict(item, tokens=[np.array([2, len(vocab), 3])])
    with pytest.raises(DataError, match=rf"image {item['image_id']}: token id {len(vocab)} outside the vocabulary"):
        collate_captions([item, bad])
    neg = dict(item, tokens=[np.array([2, -1, 3])])
    with pytest.raises(DataError, match="token id -1 outside"):
        collate_captions([neg])
    long = dict(item, tokens=[np.array([2] + [4] * 60 + [3])])
    with pytest.raises(DataError, match=r"caption of 62 tokens > max_len=54"):
        collate_captions([long])


def test_dataset_length_policy_and_empty_captions(tmp_path, factory):
    img = tmp_path / "a.jpg"
    factory.write_jpeg(img, 0)
    vocab = Vocab(["<unk>", "<pad>", "<bos>", "<eos>", "a"])
    long = ImageRecord(1, str(img), "train", ("a " * 60,), (77,))
    ds = CaptionDataset([long], vocab, image_size=16, max_len=10, length_policy="truncate")
    assert len(ds.tokens(0)) == 10
    with pytest.raises(DataError, match="image 1 annotation 77: caption has 60 words"):
        CaptionDataset([long], vocab, image_size=16, max_len=10, length_policy="refuse")
    empty = ImageRecord(2, str(img), "train", ("a", " . "), (5, 6))
    with pytest.raises(DataError, match="image 2 annotation 6: empty caption"):
        CaptionDataset([empty], vocab, image_size=16)


def test_patch_labels_from_npz(train, tmp_path):
    recs, vocab = train
    ids = np.array([r.image_id for r in recs])
    labels = np.arange(len(recs) * 4).reshape(len(recs), 4)
    np.savez(tmp_path / "pl.npz", image_ids=ids, labels=labels)
    ds = CaptionDataset(recs, vocab, image_size=16, batching="image", patch_labels=str(tmp_path / "pl.npz"))
    batch = collate_captions([ds[1], ds[2]])
    assert batch.patch_labels.tolist() == [labels[1].tolist(), labels[2].tolist()]
    assert load_patch_labels(tmp_path / "pl.npz")[int(ids[0])].dtype == torch.long
    ds2 = CaptionDataset(recs, vocab, image_size=16, patch_labels={})
    with pytest.raises(DataError, match="no patch labels"):
        ds2[0]


def test_eval_dataset(m2_dataset):
    ann, images, _ = m2_dataset
    recs = by_split(read_m2(ann, images), "test")
    ds = EvalDataset(recs, image_size=24, resize="clip")
    loader = make_loader(ds, batch_size=2)
    batches = list(loader)
    assert [len(b.image_ids) for b in batches] == [2, 1]
    b = batches[0]
    assert isinstance(b, EvalBatch) and b.images.shape == (2, 3, 24, 24)
    assert b.image_ids == [r.image_id for r in recs[:2]] and b.paths[0] == recs[0].path
    assert b.references[1] == list(recs[1].captions)


def test_resumable_sampler_is_deterministic_resumes_and_shards():
    s = ResumableSampler(10, shuffle=True, seed=3, rank=0, world_size=1)
    s.set_epoch(1)
    full = list(s)
    assert sorted(full) == list(range(10))
    s2 = ResumableSampler(10, shuffle=True, seed=3, rank=0, world_size=1)
    s2.set_epoch(1, start_index=4)
    assert list(s2) == full[4:] and len(s2) == 6
    s.set_epoch(2)
    assert list(s) != full                                    # a new order each epoch
    ranks = [ResumableSampler(10, shuffle=True, seed=3, rank=r, world_size=3) for r in range(3)]
    for r in ranks:
        r.set_epoch(1)
    parts = [list(r) for r in ranks]
    assert all(len(p) == 4 for p in parts)                    # padded to 12, as DistributedSampler
    assert set(sum(parts, [])) == set(range(10))
    with pytest.raises(ValueError):
        s.set_epoch(0, start_index=11)


def test_make_loader_skips_batches_on_resume_and_matches_uninterrupted_run(train):
    recs, vocab = train
    ds = CaptionDataset(recs, vocab, image_size=16, batching="caption")
    first = [b.image_ids for b in make_loader(ds, batch_size=4, shuffle=True, seed=7, epoch=2)]
    resumed = [b.image_ids for b in make_loader(ds, batch_size=4, shuffle=True, seed=7, epoch=2, start_batch=2)]
    assert resumed == first[2:]
    other_seed = [b.image_ids for b in make_loader(ds, batch_size=4, shuffle=True, seed=8, epoch=2)]
    assert other_seed != first


def test_worker_errors_come_back_as_one_line(tmp_path, factory):
    img = tmp_path / "ok.jpg"
    factory.write_jpeg(img, 1)
    vocab = Vocab(["<unk>", "<pad>", "<bos>", "<eos>", "a"])
    recs = [ImageRecord(1, str(img), "train", ("a",), (1,)),
            ImageRecord(2, str(tmp_path / "gone.jpg"), "train", ("a",), (2,))]
    ds = CaptionDataset(recs, vocab, image_size=16)
    loader = make_loader(ds, batch_size=2, workers=1)
    with pytest.raises(DataError) as info:
        list(loader)
    assert str(info.value) == f"{tmp_path / 'gone.jpg'}: image file not found"
