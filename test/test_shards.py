# Copyright 2026 nova3r_ros developers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Shards: a model file split under a size cap comes back bit for bit, or not at all."""

from __future__ import annotations

import shutil

from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model.checkpoint import read_header
from nova3r_ros.train import shards
import pytest
import torch


@pytest.fixture(params=['float32', 'float16'])
def model_file(tmp_path, request):
    torch.manual_seed(0)
    path = tmp_path / 'model.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(path, {'step': '3'}, storage=request.param)
    return path


def test_split_then_join_is_identical(tmp_path, model_file, capsys):
    out_dir = tmp_path / 'out'
    assert shards.main(['split', str(model_file), str(out_dir), '--max-mib', '0.1']) == 0
    pieces = sorted(out_dir.iterdir())
    assert len(pieces) >= 3  # the micro model is ~0.2-0.5 MiB
    assert all(p.stat().st_size < 0.1 * 2 ** 20 + 64 * 1024 for p in pieces)  # + header
    joined = tmp_path / 'joined.safetensors'
    assert shards.main(['join', str(out_dir), str(joined)]) == 0
    meta_a, _ = read_header(model_file)
    meta_b, _ = read_header(joined)
    assert meta_a == meta_b  # storage declaration and metadata included
    a, b = Nova3r.from_checkpoint(model_file), Nova3r.from_checkpoint(joined)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    assert joined.stat().st_size == model_file.stat().st_size


def test_join_refuses_missing_repeated_and_foreign_shards(tmp_path, model_file, capsys):
    out_dir = tmp_path / 'out'
    paths = shards.split(model_file, out_dir, 100_000)
    paths[1].unlink()
    assert shards.main(['join', str(out_dir), str(tmp_path / 'x.safetensors')]) == 2
    assert 'missing [1]' in capsys.readouterr().err
    assert not (tmp_path / 'x.safetensors').exists()

    shards.split(model_file, out_dir, 100_000)
    shutil.copy(paths[0], out_dir / 'copy.shard00.safetensors')
    with pytest.raises(ValueError, match='shard 0 appears twice'):
        shards.join(out_dir, tmp_path / 'x.safetensors')

    other = tmp_path / 'other.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(other, {'step': '4'})
    foreign = tmp_path / 'foreign'
    shards.split(other, foreign, 100_000)
    mixed = tmp_path / 'mixed'
    mixed.mkdir()
    shutil.copy(paths[0], mixed / paths[0].name)
    shutil.copy(sorted(foreign.iterdir())[1], mixed / 'other.shard01.safetensors')
    with pytest.raises(ValueError, match='different sets'):
        shards.join(mixed, tmp_path / 'x.safetensors')
    with pytest.raises(FileNotFoundError):
        shards.join(tmp_path / 'empty_does_not_exist', tmp_path / 'x.safetensors')


def test_split_refuses_a_tensor_larger_than_a_shard(tmp_path, model_file):
    with pytest.raises(ValueError, match='more than a shard may hold'):
        shards.split(model_file, tmp_path / 'o', 100)
