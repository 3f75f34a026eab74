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

"""The surface gap tool (`tools/surface_gap.py`) scores the head on the scenes it names."""

from pathlib import Path

from doubles import load_tool
from nova3r_ros.model import Nova3r
from nova3r_ros.train import surface_head as sh
import pytest
import torch


def fit_small_head(checkpoint: Path, data: Path, out: Path, *extra: str) -> None:
    """Fit a tiny surface head (and fusion) on the small dataset's first scenes into `out`."""
    assert sh.main(['--checkpoint', str(checkpoint), '--data', str(data), '--out', str(out),
                    '--hidden', '8', '--surface-scenes', '2', '--surface-steps', '3',
                    '--fusion-start', '2', '--train-scenes', '1', '--val-scenes', '1',
                    '--num-points', '64', '--num-steps', '2', '--keep', '16', '--iters', '2',
                    '--threads', '1', '--no-progress', *extra]) == 0


def test_gap_scores_trained_and_held_out_scenes(small_dataset, micro_checkpoint, tmp_path,
                                                capsys) -> None:
    tool = load_tool('surface_gap')
    argv = ['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset),
            '--train', '0', '2', '--held-out', '2', '1']
    assert tool.main(argv) == 2  # no surface head yet
    assert 'has no surface head' in capsys.readouterr().err
    out = tmp_path / 'surface.safetensors'
    fit_small_head(micro_checkpoint, small_dataset, out)
    capsys.readouterr()
    cache = tmp_path / 'cache'
    argv = ['--checkpoint', str(out), '--tokens-from', str(micro_checkpoint), '--data',
            str(small_dataset), '--cache', str(cache), '--train', '0', '2', '--train-first',
            '1', '--held-out', '2', '1', '--views', '2']
    assert tool.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    model, split = Nova3r.from_checkpoint(out), small_dataset / 'train'
    trained = sh.surface_cache(model, split, 1, [2], progress=False)
    held = sh.surface_cache(model, split, 1, [2], progress=False, start=2)
    assert lines == [
        f'trained on: 1 scenes, depth AbsRel {sh.absrel(model.surface_head, trained):.4f}',
        f'held out: 1 scenes, depth AbsRel {sh.absrel(model.surface_head, held):.4f}']
    # the cache is keyed by --tokens-from, as train.surface_head keys it
    digest = sh.file_digest(micro_checkpoint)
    assert sorted(p.name for p in cache.iterdir()) == [
        f'{digest}_train_0_2_k2.safetensors', f'{digest}_train_2_1_k2.safetensors']
    # a key file that encodes differently would read another model's tokens: refused
    other = tmp_path / 'other.safetensors'
    with torch.no_grad():
        next(model.image_encoder.parameters()).mul_(1.5)
    model.save_checkpoint(other)
    argv[argv.index('--tokens-from') + 1] = str(other)
    assert tool.main(argv) == 2
    assert 'encodes differently from --checkpoint' in capsys.readouterr().err


def test_gap_of_a_head_with_its_own_top_layers_reads_what_enters_them(
        small_dataset, micro_checkpoint, tmp_path, capsys) -> None:
    tool = load_tool('surface_gap')
    out = tmp_path / 'top.safetensors'
    fit_small_head(micro_checkpoint, small_dataset, out, '--top', '1')
    capsys.readouterr()
    cache = tmp_path / 'cache'
    assert tool.main(['--checkpoint', str(out), '--data', str(small_dataset), '--cache',
                      str(cache), '--train', '0', '2', '--held-out', '2', '1',
                      '--views', '2']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    model, split = Nova3r.from_checkpoint(out), small_dataset / 'train'
    tap = model.surface_top.start
    held = sh.surface_cache(model, split, 1, [2], progress=False, start=2, tap=tap)
    assert lines[1] == (f'held out: 1 scenes, depth AbsRel '
                        f'{sh.absrel(model.surface_head, held, model.surface_top):.4f}')
    assert all(p.name.endswith(f'_tap{tap}.safetensors') for p in cache.iterdir())


def test_depth_edges_mark_both_sides_of_a_step_between_valid_points() -> None:
    side = sh.SUB  # a one-patch grid: a side x side pointmap
    depth = torch.ones(1, side, side)
    depth[..., side // 2:] = 2.0  # a step of log 2 between two columns
    valid = torch.ones(1, side * side, dtype=torch.bool)
    edge = sh.depth_edges(depth.reshape(1, -1), valid, (1, 1), 0.1).reshape(side, side)
    columns = torch.zeros(side, dtype=torch.bool)
    columns[side // 2 - 1:side // 2 + 1] = True
    assert torch.equal(edge, columns.expand(side, side))
    # a step below the threshold is no edge, nor is one to an invalid point
    assert not sh.depth_edges(depth.reshape(1, -1), valid, (1, 1), 0.8).any()
    valid = valid.reshape(side, side).clone()
    valid[:, side // 2:] = False
    assert not sh.depth_edges(depth.reshape(1, -1), valid.reshape(1, -1), (1, 1), 0.1).any()
    with pytest.raises(ValueError, match='the grid'):
        sh.depth_edges(depth.reshape(1, -1), valid.reshape(1, -1), (2, 1), 0.1)


def test_gap_splits_each_row_at_depth_edges(small_dataset, micro_checkpoint, tmp_path,
                                            capsys) -> None:
    tool = load_tool('surface_gap')
    out = tmp_path / 'surface.safetensors'
    fit_small_head(micro_checkpoint, small_dataset, out)
    capsys.readouterr()
    argv = ['--checkpoint', str(out), '--data', str(small_dataset), '--train', '0', '2',
            '--held-out', '2', '1', '--views', '2', '--edges', '0.05']
    assert tool.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    model = Nova3r.from_checkpoint(out)
    held = sh.surface_cache(model, small_dataset / 'train', 1, [2], progress=False, start=2)
    edge = sh.depth_edges(held[1][..., 2], held[2], sh.grid_of(model), 0.05)
    assert edge.any() and not edge.all()  # a generated room has edges and flat walls
    share = float(edge.sum() / held[2].bool().sum())
    head = model.surface_head
    assert lines[3] == (f'  at depth edges ({share:.1%} of points) '
                        f'{sh.absrel(head, held, points=edge):.4f}, '
                        f'elsewhere {sh.absrel(head, held, points=~edge):.4f}')
    # the split averages the same per-point errors as the whole row
    assert min(sh.absrel(head, held, points=edge), sh.absrel(head, held, points=~edge)) \
        <= sh.absrel(head, held) <= max(sh.absrel(head, held, points=edge),
                                        sh.absrel(head, held, points=~edge))
    with pytest.raises(SystemExit):
        tool.main(argv[:-1] + ['0'])
