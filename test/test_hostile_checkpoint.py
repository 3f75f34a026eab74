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

"""
Hostile checkpoints, beyond test_model_nova3r's error cases.

test_model_nova3r covers a wrong shape, NaN and a plain pickle renamed. Here a pickle whose
unpickling would run code is refused *without* running it; wrong dtypes and Inf are refused;
the node's loader and ``nova3r_node`` turn each into one clear line and exit status 2.
"""

import os
import pickle

from nova3r_ros.model import get_preset, Nova3r
from nova3r_ros.model.checkpoint import read_header
from nova3r_ros.ros import model_loader
import pytest
from safetensors.torch import save_file
import torch


class _Payload:
    """Unpickling this creates the file ``marker`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture(scope='module')
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'good.safetensors'
    torch.manual_seed(0)
    model = Nova3r(get_preset('micro'))
    model.save_checkpoint(path)
    meta, _ = read_header(path)
    return path, meta, {k: v.clone() for k, v in model.state_dict().items()}


def _variant(tmp_path, good, name: str, change) -> str:
    _, meta, state = good
    state = dict(state)
    change(state)
    path = tmp_path / f'{name}.safetensors'
    save_file(state, path, metadata=meta)
    return str(path)


def test_malicious_pickle_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.safetensors'
    evil.write_bytes(pickle.dumps({'decoder.out.weight': _Payload(str(marker))}))
    assert not marker.exists()
    with pytest.raises(ValueError, match='not a valid safetensors file'):
        Nova3r.from_checkpoint(evil)
    with pytest.raises(model_loader.CheckpointError, match='pickle files are refused'):
        model_loader.load_model(str(evil), 'cpu')
    assert not marker.exists()  # the pickle was never loaded
    pickle.loads(evil.read_bytes())  # while unpickling it really would have run the payload
    assert marker.exists()


@pytest.mark.parametrize('dtype, tag', [(torch.float16, 'F16'), (torch.int64, 'I64'),
                                        (torch.bfloat16, 'BF16')])
def test_wrong_dtype_is_refused(tmp_path, good, dtype, tag):
    """
    Regression: refuse a tensor whose dtype is not the model's (fp16, int64, bf16).

    The fp16 tensor was assigned as is (assign=True), loaded, then every forward pass failed;
    an int64 one raised a RuntimeError from torch.
    """
    def change(state):
        state['decoder.out.weight'] = state['decoder.out.weight'].to(dtype)
    path = _variant(tmp_path, good, 'dtype', change)
    with pytest.raises(ValueError, match=f'decoder.out.weight: file {tag} vs model float32'):
        Nova3r.from_checkpoint(path)


def test_inf_and_wrong_shape_refused_through_the_node_loader(tmp_path, good):
    def inf(state):
        state['decoder.out.bias'] = torch.full_like(state['decoder.out.bias'], float('inf'))

    def shape(state):
        state['decoder.out.bias'] = torch.zeros(7)

    for name, change, reason in (('inf', inf, 'non-finite'), ('shape', shape, 'file [7]')):
        path = _variant(tmp_path, good, name, change)
        with pytest.raises(model_loader.CheckpointError) as err:
            model_loader.load_model(path, 'cpu')
        assert str(err.value).startswith(f'cannot load checkpoint {path}')
        assert reason in str(err.value)


def test_node_exits_2_with_one_line_for_a_bad_checkpoint(tmp_path, good, capfd):
    from nova3r_ros.ros import node

    path = _variant(tmp_path, good, 'nan', lambda s: s.__setitem__(
        'decoder.out.weight', torch.full_like(s['decoder.out.weight'], float('nan'))))
    assert node.main(['--ros-args', '-p', f'checkpoint:={path}', '-p', 'device:=cpu']) == 2
    err = capfd.readouterr().err
    assert 'Traceback' not in err
    lines = [line for line in err.splitlines() if 'cannot start' in line]
    assert len(lines) == 1 and 'non-finite (NaN/Inf) values in 1 tensors' in lines[0]
    assert os.path.basename(path) in lines[0]


def test_declared_half_storage_loads_widened_and_close(tmp_path, good):
    """A file that declares float16 storage loads as float32 weights within fp16 rounding."""
    _, _, state = good
    path = tmp_path / 'half.safetensors'
    model = Nova3r.from_checkpoint(good[0])
    model.save_checkpoint(path, storage='float16')
    meta, _ = read_header(path)
    assert meta['storage'] == 'float16'
    assert path.stat().st_size < 0.6 * good[0].stat().st_size
    loaded = Nova3r.from_checkpoint(path)
    for key, value in loaded.state_dict().items():
        assert value.dtype == state[key].dtype, key
        if value.is_floating_point():
            assert torch.allclose(value, state[key], rtol=1e-3, atol=1e-4), key
    assert loaded.checkpoint_storage == 'float16'
    # reserved keys stay out of the metadata a refit passes back to save_checkpoint
    assert 'storage' not in loaded.checkpoint_metadata
    loaded.save_checkpoint(tmp_path / 'refit.safetensors', loaded.checkpoint_metadata)


def test_half_storage_refuses_unknown_declaration_and_out_of_range(tmp_path, good):
    _, meta, state = good
    path = tmp_path / 'bf.safetensors'
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v
               for k, v in state.items()}, path, metadata={**meta, 'storage': 'bfloat16'})
    with pytest.raises(ValueError, match="unknown storage 'bfloat16'"):
        Nova3r.from_checkpoint(path)
    model = Nova3r.from_checkpoint(good[0])
    with torch.no_grad():
        model.decoder.out.bias[0] = 1e6  # beyond float16's 65 504: would be stored as Inf
    with pytest.raises(ValueError, match='exceed float16 range: decoder.out.bias'):
        model.save_checkpoint(tmp_path / 'big.safetensors', storage='float16')
    with pytest.raises(ValueError, match='storage must be one of'):
        model.save_checkpoint(tmp_path / 'x.safetensors', storage='int8')
