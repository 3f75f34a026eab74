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

"""tools/confidence_study.py refuses what it would only fail on later (no model run here)."""


from doubles import load_tool
import pytest


def _study():
    return load_tool('confidence_study')


@pytest.mark.parametrize('extra, said', [
    (['--heads', 'bogus'], 'unknown --heads'),
    (['--num-steps', '1'], 'last two velocities'),
    (['--threads', '0'], '--threads must be >= 1'),
    ([], 'no such file'),  # the checkpoint and splits below do not exist
])
def test_bad_arguments_are_refused_before_any_work(extra, said, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _study().parse_args(['--checkpoint', str(tmp_path / 'm.safetensors'), '--train',
                             str(tmp_path / 'a'), '--eval', str(tmp_path / 'b'), '--out',
                             str(tmp_path / 'o'), *extra])
    assert exc.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()
