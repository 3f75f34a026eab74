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
The 60 s soak (issue 12): ``python -m nova3r_ros.ros.soak`` against the node over real DDS.

3 cameras at 30 Hz 640x480, micro checkpoint. Asserts what 60 s can show: no thread or fd
growth, at most one pending window, finite latencies, no NaN, CSV + PNG + summary written.
RSS growth and the latency halves need the 10-minute run (``make soak``).
"""

import csv
import json
import math
import subprocess
import sys

from nova3r_ros.ros.soak import build_parser, CSV_FIELDS, judge, Sample
import pytest


@pytest.mark.soak
def test_soak_60s(micro_checkpoint, tmp_path):
    out = tmp_path / 'soak'
    result = subprocess.run(
        [sys.executable, '-m', 'nova3r_ros.ros.soak', '--duration', '60', '--warmup', '15',
         '--sample-period', '3', '--checkpoint', str(micro_checkpoint), '--out', str(out),
         '--quiet'], capture_output=True, text=True, timeout=400)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert 'SOAK PASSED' in result.stdout or 'SOAK FAILED' in result.stdout
    summary = json.loads((out / 'summary.json').read_text())
    checks = summary['checks']
    for name in ('node alive', 'threads', 'fds', 'queue depth', 'finite'):
        assert checks[name]['passed'], (name, checks[name]['text'], result.stdout)
    assert summary['node_exit_code'] == 0
    assert summary['clouds'] >= 10 and summary['nonfinite_clouds'] == 0
    assert 0 < summary['frames_delivered'] <= summary['frames_offered']
    with open(out / 'soak.csv') as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS and len(rows) >= 15
    assert all(int(r['windows_pending']) <= 1 for r in rows)
    with_clouds = [r for r in rows if int(r['clouds']) > 0]
    assert len(with_clouds) >= len(rows) // 2
    assert all(math.isfinite(float(r['latency_p95_ms'])) and float(r['latency_p95_ms']) > 0
               for r in with_clouds)
    assert (out / 'soak.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def _sample(t, rss=100.0, threads=10, fds=20, pending=0):
    return Sample(t, rss, threads, fds, 50.0, pending, 0, 0, 0, 0, 0, 1, 1.0, 1.0, 1.0)


def test_judge_known_answers():
    steady = [_sample(t) for t in range(0, 100, 5)]
    flat = [(t + 0.5, 1.0) for t in range(100)]
    verdict = judge(steady, flat, 10.0, 0, True)
    assert verdict.passed, verdict.checks
    leaky = [_sample(t, rss=100.0 + t * 0.05) for t in range(0, 100, 5)]  # +4.25 % after 10 s
    assert not judge(leaky, flat, 10.0, 0, True).checks['rss'][0]
    growing = [_sample(t, threads=10 + (t > 50)) for t in range(0, 100, 5)]
    assert not judge(growing, flat, 10.0, 0, True).checks['threads'][0]
    queued = steady[:-1] + [_sample(95, pending=2)]
    assert not judge(queued, flat, 10.0, 0, True).checks['queue depth'][0]
    slower = [(t + 0.5, 1.0 if t < 55 else 1.3) for t in range(100)]  # last half +30 %
    check = judge(steady, slower, 10.0, 0, True).checks['latency']
    assert not check[0] and 'ratio 1.30' in check[1]
    assert not judge(steady, flat, 10.0, 2, True).checks['finite'][0]
    assert not judge(steady[:1], flat, 10.0, 0, True).passed  # too few samples


def test_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(['--help'])
    assert exc.value.code == 0 and '--duration' in capsys.readouterr().out
    from nova3r_ros.ros.soak import main
    assert main(['--duration', '0']) == 2
    for bad in (['--duration', 'nan'], ['--rate', 'inf'], ['--warmup', 'nan']):
        assert main(bad) == 2  # NaN passed `<= 0` and failed after the node had started
    assert main(['--cameras', '3', '--window-size', '3']) == 2
    assert main(['--width', '0']) == 2  # the synthetic frames failed after the node had started
    assert main(['--num-points', '0']) == 2


def test_bad_out_and_a_failure_after_start_stop_the_node(tmp_path, monkeypatch, capsys):
    from nova3r_ros.ros import node_harness, soak

    blocker = tmp_path / 'file'
    blocker.write_text('')
    assert soak.main(['--out', str(blocker / 'sub')]) == 2
    assert 'cannot create this folder' in capsys.readouterr().err
    stopped = []

    def boom(*_args, **_kwargs):
        raise RuntimeError('probe failed')

    monkeypatch.setattr(node_harness, 'start_node', lambda *_a, **_k: 'process')
    monkeypatch.setattr(node_harness, 'stop_node', lambda p: stopped.append(p) or (0, ''))
    monkeypatch.setattr(soak, '_SoakProbe', boom)
    with pytest.raises(RuntimeError, match='probe failed'):
        soak.main(['--out', str(tmp_path / 'o'), '--duration', '1'])
    assert stopped == ['process']  # an orphaned node kept running before
