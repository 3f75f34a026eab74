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
Every command's --help opens with its module's one-line summary.

The ament docstring convention puts the summary on the line after the opening quotes, so a
description built from ``__doc__.split(...)[0]`` came out empty; this holds every command to it.
"""

import importlib

import pytest

COMMANDS = [
    'nova3r_ros.bench', 'nova3r_ros.demo', 'nova3r_ros.data.bag_export',
    'nova3r_ros.data.generate', 'nova3r_ros.data.preview', 'nova3r_ros.data.stats',
    'nova3r_ros.evaluation.bag_eval', 'nova3r_ros.evaluation.cli',
    'nova3r_ros.evaluation.quality_vs_n', 'nova3r_ros.evaluation.sampler_study',
    'nova3r_ros.evaluation.visibility_bound',
    'nova3r_ros.model.summary', 'nova3r_ros.ros.bag', 'nova3r_ros.ros.delivery',
    'nova3r_ros.ros.node_bench', 'nova3r_ros.ros.overhead_bench', 'nova3r_ros.ros.soak',
    'nova3r_ros.train.card_table', 'nova3r_ros.train.cli', 'nova3r_ros.train.confidence_head',
    'nova3r_ros.train.visibility_head',
]


@pytest.mark.parametrize('name', COMMANDS)
def test_help_starts_with_the_summary(name, capsys):
    module = importlib.import_module(name)
    summary = module.__doc__.strip().splitlines()[0].strip()
    assert summary
    with pytest.raises(SystemExit) as exc:
        module.main(['--help'])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    description = out.split('\n\n')[1].strip()  # usage, blank line, description
    assert ' '.join(description.split()).startswith(' '.join(summary.split())[:40]), description


@pytest.mark.parametrize('argv', [
    ['pack', '--points', '-5'], ['pack', '--repeats', '0'], ['dds', '--duration', 'nan'],
    ['dds', '--rate', '0'], ['callback', '--rate', '0'],
    ['model', '--preset', 'micro', '--checkpoint', 'no/such.safetensors'],
])
def test_bench_bad_arguments_are_one_line_errors(argv, capsys, tmp_path):
    from nova3r_ros import bench

    out = ['--out', str(tmp_path / 'o')] if argv[0] == 'model' else []
    assert bench.main([*argv, *out]) == 2
    err = capsys.readouterr().err
    assert f'nova3r_bench {argv[0]}' in err or '--rate' in err
    assert 'Traceback' not in err
