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

"""The release tool: half-precision storage, the release note, and the drift it reports."""

from __future__ import annotations

import json
from pathlib import Path

from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model.checkpoint import read_header
from nova3r_ros.train import release
import pytest
import torch


@pytest.fixture()
def source(tmp_path):
    torch.manual_seed(0)
    model = Nova3r(get_preset('micro'))
    path = tmp_path / 'src.safetensors'
    model.save_checkpoint(path, {'step': '7', 'release': 'old note'})
    return path


def test_half_release_is_smaller_close_and_noted(tmp_path, source, capsys):
    out = tmp_path / 'ship' / 'model.safetensors'
    assert release.main([str(source), str(out), '--storage', 'float16',
                         '--note', 'second (session 28)', '--num-points', '256']) == 0
    drift = json.loads(capsys.readouterr().out)
    meta, _ = read_header(out)
    assert meta['storage'] == 'float16' and meta['release'] == 'second (session 28)'
    assert meta['step'] == '7'  # the rest of the metadata travels
    assert drift['out_mib'] < 0.6 * drift['source_mib']
    assert 0 < drift['max_weight_change'] < 1e-2
    assert 0 < drift['median_point_change'] <= drift['max_point_change'] < 0.05
    assert list(tmp_path.joinpath('ship').iterdir()) == [out]  # no temporary file left
    assert out.stat().st_mode & 0o777 == 0o644  # readable by the node's user, not mkstemp's 0600


def test_float32_copy_in_place_changes_nothing(source, capsys):
    before = Nova3r.from_checkpoint(source).state_dict()
    assert release.main([str(source), str(source), '--num-points', '128']) == 0
    drift = json.loads(capsys.readouterr().out)
    assert drift['max_weight_change'] == 0 and drift['max_point_change'] == 0
    assert drift['source_mib'] == drift['out_mib'] > 0
    after = Nova3r.from_checkpoint(source)
    assert after.checkpoint_metadata['release'] == 'old note'
    assert all(torch.equal(before[k], v) for k, v in after.state_dict().items())


def test_take_swaps_one_module_and_leaves_the_image_path_alone(tmp_path, source, capsys):
    torch.manual_seed(1)
    donor = Nova3r(get_preset('micro'))
    donor_path = tmp_path / 'donor.safetensors'
    donor.save_checkpoint(donor_path, {})
    out = tmp_path / 'out.safetensors'
    assert release.main([str(source), str(out), '--num-points', '128',
                         '--take', f'point_encoder={donor_path}']) == 0
    drift = json.loads(capsys.readouterr().out)
    assert drift['max_point_change'] == 0 and drift['max_logit_change'] == 0
    src, got = Nova3r.from_checkpoint(source).state_dict(), Nova3r.from_checkpoint(out)
    for key, value in got.state_dict().items():
        expected = donor.state_dict()[key] if key.startswith('point_encoder.') else src[key]
        assert torch.equal(value, expected), key
    assert not torch.equal(src['point_encoder.query_tokens'],
                           got.state_dict()['point_encoder.query_tokens'])
    assert release.main([str(source), str(out), '--take', f'nope={donor_path}']) == 2
    assert "no module 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        release.main([str(source), str(out), '--take', 'point_encoder'])


def test_bad_arguments_are_one_line_errors(tmp_path, source, capsys):
    assert release.main([str(tmp_path / 'missing.safetensors'), str(tmp_path / 'o')]) == 2
    assert 'checkpoint not found' in capsys.readouterr().err
    assert release.main([str(source), str(tmp_path / 'o.safetensors'), '--note', ' ']) == 2
    assert '--note must not be empty' in capsys.readouterr().err
    assert not (tmp_path / 'o.safetensors').exists()
    with pytest.raises(SystemExit):
        release.main([str(source), str(tmp_path / 'o'), '--storage', 'int8'])


def test_diagnostics_name_the_release_and_storage(tmp_path, source):
    from nova3r_ros.ros.node_diagnostics import model_release

    assert model_release(Nova3r.from_checkpoint(source)) == 'old note, float32 storage'
    out = tmp_path / 'half.safetensors'
    release.release(source, out, 'float16', 'seventh (session 9): what changed', 1, 64)
    assert model_release(Nova3r.from_checkpoint(out)) == 'seventh (session 9), float16 storage'
    assert model_release(Nova3r(get_preset('micro'))) == 'unreleased, float32 storage'
    shipped = Nova3r.from_checkpoint(Path(__file__).resolve().parents[1] / 'checkpoints'
                                     / 'nova3r_tiny.safetensors')
    assert model_release(shipped) == 'seventeenth (session 30), float16 storage'
