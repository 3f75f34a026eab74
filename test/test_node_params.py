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

"""Node parameters: the YAML file equals the code, descriptors, validation, checkpoint look-up."""

from pathlib import Path

from nova3r_ros import params as P
from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.ros import model_loader
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / 'config' / 'nova3r.yaml'


def _yaml_params() -> dict:
    with open(YAML_PATH) as f:
        data = yaml.safe_load(f)
    assert list(data) == ['/**'], 'the params file must be keyed /** (any node name)'
    return data['/**']['ros__parameters']


def test_yaml_defaults_equal_code_defaults():
    values = _yaml_params()
    assert set(values) == set(P.DEFAULTS)
    for name, default in P.DEFAULTS.items():
        assert values[name] == default, name
        assert type(values[name]) is type(default), f'{name}: YAML type differs from the code'


def test_yaml_documents_every_parameter():
    text = YAML_PATH.read_text().splitlines()
    for index, line in enumerate(text):
        stripped = line.strip()
        if stripped.split(':')[0] in P.DEFAULTS and not stripped.startswith('#'):
            assert text[index - 1].strip().startswith('#'), f'{stripped} has no comment above'


def test_descriptors_ranges_and_read_only():
    by_name = {spec.name: P.descriptor(spec) for spec in P.PARAMETERS}
    assert all(d.description for d in by_name.values())
    assert by_name['checkpoint'].read_only and by_name['device'].read_only
    assert by_name['image_topics'].read_only and by_name['window_size'].read_only
    assert not by_name['num_points'].read_only and not by_name['scale_mode'].read_only
    assert by_name['num_points'].integer_range[0].from_value == 1
    assert by_name['visibility_threshold'].floating_point_range[0].to_value == 1.0
    assert 'normalized' in by_name['scale_mode'].additional_constraints
    # every numeric parameter has a range
    for spec in P.PARAMETERS:
        if isinstance(spec.default, int | float) and not isinstance(spec.default, bool):
            desc = by_name[spec.name]
            assert desc.integer_range or desc.floating_point_range, spec.name


def test_validate_change_accepts_and_rejects_with_reason():
    current = dict(P.DEFAULTS)
    assert P.validate_change(current, {'num_points': 100, 'num_steps': 4}, False) is None
    assert 'num_points' in P.validate_change(current, {'num_points': 0}, False)
    assert 'scale_mode' in P.validate_change(current, {'scale_mode': 'metric'}, False)
    assert 'depth_topic' in P.validate_change(current, {'scale_mode': 'depth'}, False)
    assert P.validate_change(current, {'scale_mode': 'depth'}, True) is None
    reason = P.validate_change(current, {'keyframe_min_interval': 5.0}, False)
    assert 'keyframe_max_interval' in reason
    assert 'finite' in P.validate_change(current, {'slop': float('nan')}, False)
    assert P.validate_change(current, {'use_sim_time': True}, False) is None  # not ours


def test_validate_startup():
    P.validate_startup(dict(P.DEFAULTS))
    with pytest.raises(ValueError, match='at most 8'):
        P.validate_startup({**P.DEFAULTS, 'image_topics': ['a', 'b', 'c'], 'window_size': 3})
    with pytest.raises(ValueError, match='duplicates'):
        P.validate_startup({**P.DEFAULTS, 'image_topics': ['a', 'a']})
    with pytest.raises(ValueError, match='non-empty'):
        P.validate_startup({**P.DEFAULTS, 'image_topics': ['']})
    with pytest.raises(ValueError, match='depth_topic'):
        P.validate_startup({**P.DEFAULTS, 'scale_mode': 'depth'})
    # a depth topic without intrinsics: every window went unpublished, with only a WARN
    for mode in ('auto', 'depth'):
        with pytest.raises(ValueError, match='camera_info_topic'):
            P.validate_startup({**P.DEFAULTS, 'depth_topic': 'depth', 'camera_info_topic': '',
                                'scale_mode': mode})
    P.validate_startup({**P.DEFAULTS, 'depth_topic': 'depth', 'camera_info_topic': '',
                        'scale_mode': 'normalized'})
    with pytest.raises(ValueError, match='transport'):
        P.validate_startup({**P.DEFAULTS, 'transport': 'theora'})


def test_checkpoint_lookup_order_and_messages(tmp_path, monkeypatch):
    explicit = tmp_path / 'x.safetensors'
    assert model_loader.candidate_paths(str(explicit)) == [explicit]
    with pytest.raises(model_loader.CheckpointError, match='checkpoint not found'):
        model_loader.resolve_checkpoint(str(explicit))
    share = tmp_path / 'share'
    source = tmp_path / 'source'
    monkeypatch.setattr(model_loader, '_share_checkpoints', lambda: share)
    monkeypatch.setattr(model_loader, 'SOURCE_CHECKPOINTS', source)
    default = model_loader.DEFAULT_CHECKPOINT
    assert model_loader.candidate_paths('') == [share / default, source / default]
    with pytest.raises(model_loader.CheckpointError, match='shipped'):
        model_loader.resolve_checkpoint('')
    source.mkdir()
    (source / default).write_bytes(b'x')
    assert model_loader.resolve_checkpoint('') == source / default
    share.mkdir()
    (share / default).write_bytes(b'x')
    assert model_loader.resolve_checkpoint('') == share / default  # share dir wins


def test_share_lookup_without_ament_environment(monkeypatch):
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    assert model_loader._share_checkpoints() is None
    default = model_loader.SOURCE_CHECKPOINTS / model_loader.DEFAULT_CHECKPOINT
    assert model_loader.candidate_paths('') == [default]


def test_load_model_corrupt_and_valid(tmp_path):
    corrupt = tmp_path / 'corrupt.safetensors'
    corrupt.write_bytes(b'\x00' * 100)
    with pytest.raises(model_loader.CheckpointError, match='cannot load checkpoint'):
        model_loader.load_model(str(corrupt), 'cpu')
    good = tmp_path / 'micro.safetensors'
    torch.manual_seed(0)
    Nova3r(get_preset('micro')).save_checkpoint(good)
    model, path, device = model_loader.load_model(str(good), 'auto')
    assert path == good and model.cfg.name == 'micro' and not model.training
    assert device.type == ('cuda' if torch.cuda.is_available() else 'cpu')


def test_device_and_threads():
    assert model_loader.select_device('cpu').type == 'cpu'
    with pytest.raises(model_loader.CheckpointError):
        model_loader.select_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(model_loader.CheckpointError, match='CUDA is not available'):
            model_loader.select_device('cuda')
    assert model_loader.worker_threads(0, cores=2) == 1
    assert model_loader.worker_threads(0, cores=1) == 1
    assert model_loader.worker_threads(0, cores=16) == 15
    assert model_loader.worker_threads(3, cores=16) == 3


def test_precision_parameter_reaches_the_model(tmp_path):
    from nova3r_ros.model import PRECISIONS

    assert P.PRECISIONS == PRECISIONS  # the node's choices are the model's
    assert P.SPECS['precision'].choices == PRECISIONS and P.DEFAULTS['precision'] == 'auto'
    with pytest.raises(ValueError, match='precision'):
        P.validate_startup({**P.DEFAULTS, 'precision': 'fp16'})
    good = tmp_path / 'micro.safetensors'
    torch.manual_seed(0)
    Nova3r(get_preset('micro')).save_checkpoint(good)
    model, _, _ = model_loader.load_model(str(good), 'cpu', 'bf16')
    assert model.precision == 'bf16' and model.uses_bf16()
    model, _, _ = model_loader.load_model(str(good), 'cpu')
    assert model.precision == 'auto' and not model.uses_bf16()
    with pytest.raises(model_loader.CheckpointError, match='precision'):
        model_loader.load_model(str(good), 'cpu', 'half')


def test_bf16_on_a_gpu_without_native_bf16_is_refused_at_start_up(tmp_path, monkeypatch):
    # a Volta Jetson Xavier: refused before loading, not failing every window later
    good = tmp_path / 'micro.safetensors'
    torch.manual_seed(0)
    Nova3r(get_preset('micro')).save_checkpoint(good)
    monkeypatch.setattr(model_loader, 'select_device', lambda device: torch.device('cuda', 0))
    monkeypatch.setattr(model_loader, 'cuda_has_native_bf16', lambda device: False)
    with pytest.raises(model_loader.CheckpointError, match='no native bf16'):
        model_loader.load_model(str(good), 'cuda', 'bf16')


def test_offline_replay_runs_at_the_node_precision():
    from nova3r_ros.ros.offline import run_offline
    import numpy as np

    torch.manual_seed(0)
    model = Nova3r(get_preset('micro')).eval()
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    run_offline(model, np.zeros(1, np.int64), frames, np.zeros((1, 8, 8), np.float32),
                np.eye(3), [], {**P.DEFAULTS, 'precision': 'bf16'}, progress=False)
    assert model.uses_bf16()  # the same clouds as a node started with precision: bf16


@pytest.mark.parametrize('requested', [1, 3])
def test_offline_replay_runs_at_the_node_thread_count(monkeypatch, requested: int):
    # the thread count changes a convolution's sums; a visibility at the threshold then flips
    # and moves the depth scale fit, so offline must use the node's threads to match its clouds
    from nova3r_ros.ros import offline
    import numpy as np

    seen = []

    def window(model, window, settings):
        seen.append(torch.get_num_threads())
        raise RuntimeError('stop')

    before = torch.get_num_threads()
    monkeypatch.setattr(offline, 'run_window', window)
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(RuntimeError, match='stop'):
        offline.run_offline(Nova3r(get_preset('micro')).eval(), np.zeros(1, np.int64), frames,
                            np.zeros((1, 8, 8), np.float32), np.eye(3), [[0]],
                            {**P.DEFAULTS, 'torch_threads': requested}, progress=False)
    assert seen == [requested]
    assert torch.get_num_threads() == before  # restored, even when a window raises
