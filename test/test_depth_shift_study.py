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

"""The depth shift study (`tools/depth_shift_study.py`) scores each depth step, unaligned."""

from doubles import load_tool
import numpy as np
import pytest

OFFSET = np.array([0.3, 0.0, 0.4])  # model units: a cloud placed off the true surfaces


class MisplacedGT:
    """Stands in for the model: the sample's GT in model units, every point moved by OFFSET."""

    def __init__(self, model: object, oversample: float = 1.0) -> None:
        del model, oversample

    def predict(self, sample: dict, num_points: int, seed: int) -> dict:
        visible = np.asarray(sample['points_visible'], dtype=bool)
        points = np.asarray(sample['points'], dtype=np.float64) * float(sample['median3_scale'])
        return {'points': points + OFFSET, 'visibility': visible,
                'visibility_scores': visible.astype(np.float64), 'units': 'normalized'}


def test_the_shift_fit_places_a_misplaced_cloud_and_the_table_pairs_the_fits(
        small_dataset, monkeypatch) -> None:
    tool = load_tool('depth_shift_study')
    monkeypatch.setattr(tool, 'ModelMethod', MisplacedGT)
    files = sorted((small_dataset / 'train').glob('sample_*.npz'))
    rows, skipped = tool.study(None, files, views=2, num_points=2048, oversample=1.0,
                               progress=False, tolerances=(0.1, 0.2))
    assert skipped == []
    shift, scale_only = rows['chamfer_shift[none]'], rows['chamfer[none]']
    snapped = rows['chamfer_shift+snap0.1[none]']
    assert len(shift) == len(scale_only) == len(snapped) == len(files)
    assert list(rows)[-1] == 'chamfer_shift+snap0.2[none]'
    for name in shift:  # every scene: the shifted cloud lies on the GT, the other does not
        assert shift[name]['complete/fscore@0.1'] > 0.8
        assert scale_only[name]['complete/fscore@0.1'] < 0.5
        # snapping a cloud already on the surface keeps it there
        assert snapped[name]['complete/fscore@0.1'] > 0.8
    text = tool.table(rows, resamples=100)
    assert '| chamfer_shift[none] - chamfer[none] | complete/fscore@0.1 | +0.' in text
    assert '| chamfer_shift+snap0.1[none] - chamfer_shift[none] | complete/fscore@0.1 |' in text
    assert '| chamfer_shift+snap0.2[none] - chamfer_shift+snap0.1[none] |' in text
    assert f'| chamfer[none] | {len(files)} |' in text


def test_main_refuses_bad_arguments(tmp_path, capsys) -> None:
    tool = load_tool('depth_shift_study')
    with pytest.raises(SystemExit):
        tool.main(['--checkpoint', 'x', '--data', str(tmp_path), '--limit', '0'])
    assert tool.main(['--checkpoint', 'x', '--data', str(tmp_path / 'missing')]) == 2
    assert 'error:' in capsys.readouterr().err
