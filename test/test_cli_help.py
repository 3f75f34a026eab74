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

import argparse
import importlib
import re

import pytest

COMMANDS = [
    'nova3r_ros.bench', 'nova3r_ros.demo', 'nova3r_ros.data.bag_export',
    'nova3r_ros.data.generate', 'nova3r_ros.data.preview', 'nova3r_ros.data.stats',
    'nova3r_ros.evaluation.bag_eval', 'nova3r_ros.evaluation.cli',
    'nova3r_ros.evaluation.quality_vs_n', 'nova3r_ros.evaluation.sampler_study',
    'nova3r_ros.train.visibility_bound',
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


SUBCOMMAND_HELP = [
    ('nova3r_ros.bench', ['callback']), ('nova3r_ros.bench', ['dds']),
    ('nova3r_ros.bench', ['overhead']), ('nova3r_ros.bench', ['model']),
    ('nova3r_ros.ros.bag', ['make']), ('nova3r_ros.ros.bag', ['play']),
    ('nova3r_ros.ros.bag', ['record']),
]


@pytest.mark.parametrize('name,prefix', [(n, []) for n in COMMANDS] + SUBCOMMAND_HELP)
def test_help_shows_no_misleading_default(name, prefix, capsys):
    # '--no-offline (default: True)' read as "on by default"; "(default 600) (default: 600.0)"
    # said it twice; required options printed "(default: None)".
    module = importlib.import_module(name)
    with pytest.raises(SystemExit):
        module.main([*prefix, '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    for wrong in ('(default: None)', '(default: True)', '(default: False)'):
        assert wrong not in text
    assert not re.search(r'default[^()]*\) \(default: ', text), text


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield action


@pytest.mark.parametrize('name', ['nova3r_ros.bench', 'nova3r_ros.demo',
                                  'nova3r_ros.evaluation.cli', 'nova3r_ros.evaluation.bag_eval',
                                  'nova3r_ros.ros.bag', 'nova3r_ros.ros.delivery',
                                  'nova3r_ros.ros.soak'])
def test_every_option_says_what_it_does(name):
    undocumented = [a.option_strings or a.dest
                    for a in _options(importlib.import_module(name).build_parser())
                    if not a.help]
    assert not undocumented


def test_generate_refuses_an_out_it_cannot_create(tmp_path, capsys):
    from nova3r_ros.data import generate

    (tmp_path / 'file').write_text('')
    with pytest.raises(SystemExit) as exc:
        generate.main(['--out', str(tmp_path / 'file' / 'sub'), '--num-samples', '1'])
    assert exc.value.code == 2 and 'cannot create this folder' in capsys.readouterr().err


def test_bag_make_names_the_flag_and_refuses_before_rendering(tmp_path, capsys):
    from nova3r_ros.ros import bag

    (tmp_path / 'file').write_text('')
    for argv, said in ((['--frames', '0'], '--frames must be >= 1'),
                       (['--gt-points', '0'], '--gt-points must be >= 1'),
                       (['--width', '100000'], '16..4096'),
                       (['--preset', 'huge'], 'unknown preset')):
        assert bag.main(['make', '--out', str(tmp_path / 'b'), *argv]) == 2
        assert said in capsys.readouterr().err
    assert bag.main(['make', '--out', str(tmp_path / 'file' / 'b')]) == 2
    assert f"{tmp_path / 'file'} is a file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['file']


def test_preview_and_stats_refuse_bad_input(tmp_path, capsys):
    from nova3r_ros.data import preview, stats

    for argv in (['--limit', '0', str(tmp_path)], [str(tmp_path / 'missing')],
                 ['--seeds', '0', '--views', '0']):
        with pytest.raises(SystemExit) as exc:
            preview.main([*argv, '--out', str(tmp_path / 'png')])
        assert exc.value.code == 2 and 'Traceback' not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        stats.main(['--limit', '0', str(tmp_path)])
    assert exc.value.code == 2 and '--limit must be >= 1' in capsys.readouterr().err
