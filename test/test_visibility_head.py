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

"""The visibility-head refit: labels follow the evaluation's rule, only the head changes."""

import json
import math

from nova3r_ros.data.dataset import load_sample, read_manifest, select_views
from nova3r_ros.evaluation.baselines import ModelMethod
from nova3r_ros.evaluation.metrics import auroc
from nova3r_ros.evaluation.scoring import ground_truth, score_prediction
from nova3r_ros.model import Nova3r
from nova3r_ros.train import visibility_head as vh
import numpy as np
import pytest
from safetensors.torch import load_file


def test_labels_are_the_evaluations_nearest_gt_rule(small_dataset, micro_checkpoint):
    model = Nova3r.from_checkpoint(micro_checkpoint)
    split = small_dataset / 'val'
    sample = select_views(load_sample(split / read_manifest(split)['samples'][0]['file']), 2)
    _, labels = vh.scene_features(model, sample, 300, 2, keep=300, seed=5)
    prediction = ModelMethod(model, num_steps=2).predict(sample, 300, seed=5)
    scored = score_prediction(prediction, sample, ground_truth(sample), 'chamfer', seed=5)
    # the same points, the same alignment, so the same AUROC as `nova3r_eval` reports
    assert labels.shape == (300,) and 0 < labels.mean() < 1
    assert math.isclose(auroc(prediction['visibility_scores'], labels),
                        scored.metrics['visibility/auroc'], rel_tol=1e-9)


def test_refit_changes_only_the_head(small_dataset, micro_checkpoint, tmp_path):
    out = tmp_path / 'refit.safetensors'
    argv = ['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset), '--out', str(out),
            '--train-scenes', '3', '--val-scenes', '2', '--num-points', '256',
            '--num-steps', '2', '--keep', '128', '--epochs', '3', '--batch', '64',
            '--lr', '1e-2', '--reinit', '--no-progress']
    assert vh.main(argv) == 0
    before, after = load_file(str(micro_checkpoint)), load_file(str(out))
    assert before.keys() == after.keys()
    changed = {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}
    assert changed and all(k.startswith('visibility_head.') for k in changed)
    fit = json.loads((tmp_path / 'refit_fit.json').read_text())
    assert fit['train_rows'] == 3 * 128
    assert all(math.isfinite(fit[k]) for k in ('val_auroc_before', 'val_auroc_after'))
    assert [row['epoch'] for row in fit['log']] == [0, 1, 2, 3]
    meta = json.loads(Nova3r.from_checkpoint(out).checkpoint_metadata['visibility_head'])
    assert meta['refit_on'] == 'sampled points' and meta['num_steps'] == 2
    assert meta['precision'] == 'auto'


def test_refuses_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        vh.main(['--checkpoint', 'x', '--data', 'y', '--out', 'z', '--epochs', '0'])
    assert '--epochs must be >= 1' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        vh.main(['--checkpoint', 'x', '--data', 'y', '--out', 'z', '--precision', 'fp16'])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_refits_refuse_to_overwrite_their_checkpoint_or_read_a_corrupt_one(
        small_dataset, micro_checkpoint, tmp_path, capsys):
    from nova3r_ros.train import confidence_head as ch

    before = micro_checkpoint.read_bytes()
    for refit in (vh, ch):
        with pytest.raises(SystemExit):
            refit.main(['--checkpoint', str(micro_checkpoint), '--data', str(small_dataset),
                        '--out', str(micro_checkpoint)])
        assert 'must not be the --checkpoint' in capsys.readouterr().err
        with pytest.raises(SystemExit):
            refit.main(['--checkpoint', str(tmp_path / 'none.safetensors'), '--data',
                        str(small_dataset), '--out', str(tmp_path / 'o.safetensors')])
        assert 'no such file' in capsys.readouterr().err
    assert micro_checkpoint.read_bytes() == before
    fake = tmp_path / 'fake.safetensors'
    fake.write_text('not weights')
    assert vh.main(['--checkpoint', str(fake), '--data', str(small_dataset),
                    '--out', str(tmp_path / 'o.safetensors')]) == 2
    assert 'error: --checkpoint' in capsys.readouterr().err
