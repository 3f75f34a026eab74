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
The package's parts import one another in one direction only (DESIGN.md section 4).

Read from the source (every import, including those inside functions): the parts form no
cycle, the model imports nothing else of the package, and nothing below the ROS layer reaches
it, even through another part.
"""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'nova3r_ros'
BELOW_ROS = ('model', 'io', 'geometry', 'params', 'data', 'evaluation', 'train')


def _part_of(module: str) -> str | None:
    """'nova3r_ros.ros.node' -> 'ros'; 'nova3r_ros.params' -> 'params'."""
    names = module.split('.')
    return names[1] if names[0] == 'nova3r_ros' and len(names) > 1 else None


def _imported(path: Path) -> set[str]:
    """Dotted names a file imports, relative imports resolved, `from a import b` as a.b."""
    package = list(path.relative_to(PACKAGE.parent).with_suffix('').parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            names.update(f'{module}.{alias.name}' for alias in node.names)
    return names


def part_graph() -> dict[str, set[str]]:
    """Map each part of the package to the other parts it imports."""
    graph = defaultdict(set)
    for path in PACKAGE.rglob('*.py'):
        source = _part_of('.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts))
        for name in _imported(path):
            target = _part_of(name)
            if target and target != source:
                graph[source].add(target)
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_reader_sees_real_edges():
    graph = part_graph()
    assert 'geometry' in graph['params']  # params reads the scale modes
    assert {'model', 'params', 'io'} <= graph['ros']
    assert 'evaluation' in graph['train']  # validation scores with the evaluation's metrics


def test_parts_form_no_cycle():
    graph = part_graph()
    cycles = sorted(part for part in graph if part in _reachable(graph, part))
    assert not cycles, {part: sorted(graph[part]) for part in cycles}


def test_model_imports_nothing_else_of_the_package():
    assert part_graph().get('model', set()) == set()


def test_nothing_below_the_ros_layer_reaches_it():
    graph = part_graph()
    for part in BELOW_ROS:
        assert 'ros' not in _reachable(graph, part), (part, sorted(_reachable(graph, part)))


def test_every_module_below_the_ros_layer_imports_without_rclpy():
    """Import them all in a fresh interpreter: neither rclpy nor a ROS message package loads."""
    import subprocess
    import sys

    modules = sorted(
        '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts).removesuffix(
            '.__init__')
        for part in BELOW_ROS
        for path in ([PACKAGE / f'{part}.py'] if (PACKAGE / f'{part}.py').is_file()
                     else (PACKAGE / part).rglob('*.py')))
    assert len(modules) > 40 and 'nova3r_ros.geometry.scale' in modules
    code = ('import importlib, sys\n'
            f'for name in {modules!r}:\n'
            '    importlib.import_module(name)\n'
            'ros = sorted(m for m in sys.modules if m.split(".")[0] in (\n'
            '    "rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "rcl_interfaces"))\n'
            'assert not ros, ros\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
