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

"""tools/device_stage2.sh --smoke: the lent-GPU run's whole chain, CPU-sized, end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

from nova3r_ros.model import Nova3r
from nova3r_ros.train import shards
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_returns_a_model_in_pieces_the_device_can_send(tmp_path):
    env = {**os.environ, 'PYTHON': sys.executable, 'WORK': str(tmp_path / 'work'),
           'RECIPE': 'wide', 'WIDTH': '48', 'HEADS': '2'}
    done = subprocess.run(['bash', str(ROOT / 'tools' / 'device_stage2.sh'), '--smoke'],
                          env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / 'work' / 'out'
    files = sorted(out.iterdir())
    # what the device tool returns: at most 8 files of at most 16 MiB, plain names
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2 ** 20 for f in files)
    assert json.loads((out / 'summary.json').read_text())['step'] == 4
    model = Nova3r.from_checkpoint(shards.join(out, tmp_path / 'model.safetensors'))
    assert model.checkpoint_storage == 'float16'
    assert model.cfg.backbone.embed_dim == 48 and model.cfg.aggregator.dim == 48
    # the frozen half is the shipped decoder, bit for bit after float16 storage
    shipped = Nova3r.from_checkpoint(ROOT / 'checkpoints' / 'nova3r_tiny.safetensors')
    assert all(v.equal(shipped.state_dict()[k]) for k, v in model.state_dict().items()
               if k.startswith('decoder.'))
    assert '48-wide encoder from scratch, 6 scenes' in model.checkpoint_metadata['release']


def test_run_mode_refuses_to_start_outside_the_device(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'OUT'}
    done = subprocess.run(['bash', str(ROOT / 'tools' / 'device_stage2.sh')], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and 'run this through the device tool' in done.stderr
    bad = subprocess.run(['bash', str(ROOT / 'tools' / 'device_stage2.sh'), '--bogus'],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and 'usage' in bad.stderr
