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

"""nova3r_eval end to end on samples from the real data generator (docs/dataset.md)."""

import json
import math

from nova3r_ros.data.dataset import sample_filename, save_sample
from nova3r_ros.data.sample import GeneratorConfig, make_sample
from nova3r_ros.evaluation.cli import main
import pytest

SEEDS = (2_000_000, 2_000_001)  # test split


@pytest.fixture(scope='module')
def split_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'test'
    root.mkdir()
    cfg = GeneratorConfig(num_views=2, num_points=12000)
    for seed in SEEDS:
        save_sample(root / sample_filename(seed), make_sample(seed, cfg))
    return root


@pytest.mark.slow
def test_cli_on_generated_samples(split_dir, tmp_path, capsys):
    out = tmp_path / 'eval'
    argv = ['--data', str(split_dir), '--method', 'oracle', '--method', 'ceiling',
            '--num-points', '4096', '--out', str(out), '--plots', '1', '--bootstrap', '200',
            '--no-progress']
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert 'ceiling[chamfer]: scoring (alignment + metrics)' in printed
    data = json.loads((out / 'metrics.json').read_text())
    summary = data['summary']
    assert set(summary) == {'oracle[none]', 'oracle[chamfer]', 'ceiling[chamfer]'}
    oracle, ceiling = summary['oracle[none]'], summary['ceiling[chamfer]']
    # The oracle's points lie on GT surfaces: as accurate as an independent GT sample ...
    assert oracle['complete/accuracy']['mean'] < 1.3 * ceiling['complete/accuracy']['mean']
    # ... but it cannot reach what no input view sees.
    assert oracle['occluded/recall@0.05']['mean'] < 0.6
    # (At N=4096 even an exact resample misses some GT within 0.05: the density ceiling.)
    assert ceiling['occluded/recall@0.05']['mean'] > 0.8
    # Pixel sampling is sparse far from the cameras, so even visible recall is below 1.
    assert oracle['visible/recall@0.05']['mean'] > oracle['occluded/recall@0.05']['mean'] + 0.3
    assert math.isclose(oracle['align/scale']['mean'], 1.0)
    assert (out / 'report.md').read_text().count('| oracle[none] |') >= 1
    assert (out / 'plots' / 'sample_02000000.png').exists()
    assert len(list((out / 'cache' / 'ceiling[chamfer]').glob('*.json'))) == 2
    # A second run is served from the cache.
    assert main(argv) == 0
    assert '2 from cache' in capsys.readouterr().out


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    assert main(['--data', str(tmp_path / 'missing'), '--no-progress']) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert main(['--data', str(tmp_path), '--num-points', '0']) == 2
    assert '--num-points must be >= 1' in capsys.readouterr().err
    assert main(['--data', str(tmp_path), '--method', 'prior']) == 2
    assert 'needs --checkpoint' in capsys.readouterr().err


def test_prior_digest_ignores_the_image_encoder_not_the_head(tmp_path):
    from nova3r_ros.evaluation.cli import _prior_digest, file_digest
    from nova3r_ros.model import get_preset, Nova3r
    import torch

    torch.manual_seed(0)
    model = Nova3r(get_preset('micro'))
    model.save_checkpoint(tmp_path / 'a.safetensors')
    with torch.no_grad():  # a new stage 2: image encoder changes, decoder + mean latent do not
        model.image_encoder.aggregator.token_proj.weight.add_(1.0)
    model.save_checkpoint(tmp_path / 'b.safetensors')
    with torch.no_grad():
        model.decoder.out.bias.add_(1.0)
    model.save_checkpoint(tmp_path / 'c.safetensors')
    with torch.no_grad():  # a refitted visibility head: the prior's labels change
        model.decoder.out.bias.sub_(1.0)
        next(model.visibility_head.parameters()).add_(1.0)
    model.save_checkpoint(tmp_path / 'd.safetensors')
    a, b, c, d = (tmp_path / f'{n}.safetensors' for n in 'abcd')
    assert file_digest(a) != file_digest(b)
    assert _prior_digest(a) == _prior_digest(b) != _prior_digest(c)
    assert _prior_digest(d) not in (_prior_digest(a), _prior_digest(c))


def test_autoencoder_and_queries_rows(split_dir, tmp_path, capsys):
    from nova3r_ros.evaluation.cli import _stage1_digest
    from nova3r_ros.model import get_preset, Nova3r
    import torch

    torch.manual_seed(0)
    model = Nova3r(get_preset('micro'))
    ckpt = tmp_path / 'micro.safetensors'
    model.save_checkpoint(ckpt)
    out = tmp_path / 'eval'
    argv = ['--data', str(split_dir), '--method', 'autoencoder', '--method', 'queries',
            '--checkpoint', str(ckpt), '--num-points', '512', '--num-steps', '2',
            '--encoder-points', '256', '--out', str(out), '--plots', '0', '--bootstrap', '50',
            '--threads', '1', '--no-progress']
    assert main(argv) == 0
    summary = json.loads((out / 'metrics.json').read_text())['summary']
    queries, ae = summary['queries[chamfer]'], summary['autoencoder[chamfer]']
    # the M = 16 FPS queries are GT points: exact (accuracy 0) but sparse (large holes)
    assert queries['n_pred']['mean'] == 16
    assert queries['complete/accuracy']['mean'] < 1e-6
    assert queries['complete/hole_ratio@0.05']['mean'] > 0.5
    assert ae['n_pred']['mean'] == 512 and math.isfinite(ae['complete/chamfer']['mean'])
    assert 'visibility/auroc' not in ae  # no stage-2 head on a stage-1 latent
    # a new stage 2 (image encoder) keeps the stage-1 rows' cache; a new decoder does not
    with torch.no_grad():
        model.image_encoder.aggregator.token_proj.weight.add_(1.0)
    model.save_checkpoint(ckpt)
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count('2 from cache') == 2
    before = _stage1_digest(ckpt)
    with torch.no_grad():
        model.decoder.out.bias.add_(1.0)
    model.save_checkpoint(ckpt)
    assert _stage1_digest(ckpt) != before


def test_oversample_is_the_nodes_and_recomputes_only_sampled_rows(split_dir, tmp_path, capsys):
    from nova3r_ros.evaluation.cli import build_parser
    from nova3r_ros.model import get_preset, Nova3r
    from nova3r_ros.params import DEFAULTS
    from nova3r_ros.ros.pipeline import Settings as NodeSettings
    import torch

    # the evaluation scores what the node publishes: one default for both
    parsed = build_parser().parse_args(['--data', 'x'])
    assert parsed.oversample == DEFAULTS['oversample']
    assert parsed.num_steps == DEFAULTS['num_steps'] == 4
    assert NodeSettings().oversample == DEFAULTS['oversample'] > 1.0
    torch.manual_seed(0)
    ckpt = tmp_path / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(ckpt)
    out = tmp_path / 'eval'
    base = ['--data', str(split_dir), '--method', 'ceiling', '--method', 'model',
            '--checkpoint', str(ckpt), '--num-points', '256', '--num-steps', '2',
            '--out', str(out), '--plots', '0', '--bootstrap', '50', '--threads', '1',
            '--no-progress']
    assert main(base + ['--oversample', '1']) == 0
    plain = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    capsys.readouterr()
    assert main(base + ['--oversample', '2']) == 0
    printed = capsys.readouterr().out
    filtered = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    assert printed.count('2 from cache') == 1  # the ceiling's; the model row is recomputed
    assert all(filtered[s]['n_pred'] == 256 for s in filtered)  # N published either way
    assert filtered != plain
    assert main(base + ['--oversample', '4.5']) == 2
    assert '--oversample must be in [1, 4]' in capsys.readouterr().err


def test_keep_picks_the_sampler_policy_and_keys_the_cache(split_dir, tmp_path, capsys):
    import dataclasses

    from nova3r_ros.model import get_preset, Nova3r
    import torch

    torch.manual_seed(0)
    cfg = get_preset('micro')
    plain, headed = tmp_path / 'plain.safetensors', tmp_path / 'headed.safetensors'
    Nova3r(cfg).save_checkpoint(plain)
    Nova3r(dataclasses.replace(cfg, decoder=dataclasses.replace(
        cfg.decoder, confidence_hidden=8, confidence_coverage=1.0))).save_checkpoint(headed)
    out = tmp_path / 'eval'
    base = ['--data', str(split_dir), '--method', 'model', '--num-points', '256',
            '--num-steps', '2', '--out', str(out), '--plots', '0', '--bootstrap', '50',
            '--threads', '1', '--no-progress', '--oversample', '2']
    assert main(base + ['--checkpoint', str(plain), '--keep', 'confidence']) == 2
    assert 'needs a checkpoint with a confidence head' in capsys.readouterr().err
    assert main(base + ['--checkpoint', str(headed)]) == 0  # auto: the head ranks
    auto = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    capsys.readouterr()
    assert main(base + ['--checkpoint', str(headed), '--keep', 'density']) == 0
    assert '0 from cache' in capsys.readouterr().out  # another policy, another cache key
    dens = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    assert dens != auto


def test_precision_and_sampler_key_the_cache_and_change_the_model_rows(split_dir, tmp_path,
                                                                       capsys):
    from nova3r_ros.model import get_preset, Nova3r
    import torch

    torch.manual_seed(0)
    checkpoint = tmp_path / 'micro.safetensors'
    Nova3r(get_preset('micro')).save_checkpoint(checkpoint)
    out = tmp_path / 'eval'
    base = ['--data', str(split_dir), '--method', 'model', '--method', 'oracle',
            '--num-points', '256', '--num-steps', '2', '--out', str(out), '--plots', '0',
            '--bootstrap', '50', '--threads', '1', '--no-progress', '--checkpoint',
            str(checkpoint)]
    assert main(base) == 0
    fp32 = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    capsys.readouterr()
    assert main(base + ['--precision', 'bf16']) == 0
    printed = capsys.readouterr().out
    assert printed.count('0 from cache') == 1  # the model row; the oracle's is precision-free
    bf16 = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    assert bf16 != fp32 and bf16.keys() == fp32.keys()
    assert json.loads((out / 'config.json').read_text())['precision'] == 'bf16'
    assert main(base + ['--precision', 'fp32']) == 0  # fp32 = auto on the CPU, but keyed apart
    assert json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]'] == fp32
    capsys.readouterr()
    # --sampler: another ODE step for the sampled rows, keyed apart too
    from nova3r_ros.evaluation.cli import SAMPLERS
    from nova3r_ros.model.flow import METHODS

    assert SAMPLERS == METHODS
    assert main(base + ['--sampler', 'ddim']) == 0
    assert capsys.readouterr().out.count('0 from cache') == 1
    ddim = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    assert ddim != fp32
    assert json.loads((out / 'config.json').read_text())['sampler'] == 'ddim'
    assert main(base + ['--sampler', 'euler']) == 0  # the file's own (euler), keyed apart
    euler = json.loads((out / 'metrics.json').read_text())['per_sample']['model[chamfer]']
    assert euler == fp32
    with pytest.raises(SystemExit) as refused:
        main(base + ['--precision', 'half'])
    assert refused.value.code == 2


def test_cache_is_kept_apart_for_splits_made_another_way(split_dir, tmp_path, capsys):
    import shutil

    splits = []
    for name, width in (('a', 224), ('b', 320)):
        split = tmp_path / name
        shutil.copytree(split_dir, split)
        (split / 'manifest.json').write_text(json.dumps(
            {'format_version': 1, 'generator_version': '1.0.0', 'mode': 'room',
             'params': {'num_views': 2, 'width': width}, 'samples': []}))
        splits.append(split)
    out = tmp_path / 'eval'
    argv = ['--method', 'oracle', '--num-points', '2048', '--out', str(out), '--plots', '0',
            '--bootstrap', '10', '--no-progress', '--limit', '1']
    assert main(['--data', str(splits[0]), *argv]) == 0
    assert main(['--data', str(splits[0]), *argv]) == 0
    assert '1 from cache' in capsys.readouterr().out
    # same sample ids, other generator parameters: scored again, not served from the cache
    assert main(['--data', str(splits[1]), *argv]) == 0
    printed = capsys.readouterr().out
    assert '0 from cache' in printed and '1 from cache' not in printed
    # the manifest says how many views there are: more are refused before any work
    assert main(['--data', str(splits[0]), *argv, '--views', '3']) == 2
    assert 'has 2 views per sample, asked 3' in capsys.readouterr().err
    (tmp_path / 'file').write_text('')
    assert main(['--data', str(splits[0]), '--out', str(tmp_path / 'file'), '--no-progress']) == 2
    assert 'is a file' in capsys.readouterr().err
    assert main(['--data', str(splits[0]), '--out', str(tmp_path / 'file' / 'sub'),
                 '--no-progress']) == 2
    assert 'cannot create this folder' in capsys.readouterr().err


def test_an_unreadable_sample_is_a_one_line_error(tmp_path, capsys):
    split = tmp_path / 'test'
    split.mkdir()
    (split / 'sample_02000000.npz').write_text('not a sample')
    assert main(['--data', str(split), '--method', 'oracle', '--out', str(tmp_path / 'e'),
                 '--no-progress', '--plots', '0']) == 2
    err = capsys.readouterr().err
    assert 'nova3r_eval: error' in err and 'Traceback' not in err
