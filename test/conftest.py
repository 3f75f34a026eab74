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

"""Session-wide test environment: DDS stays on loopback, on a domain of its own, as shipped."""

import os

from nova3r_ros.ros.dds import apply_default_dds_profile

# Set before anything imports rclpy: discovery only on this host, a domain id unique to this
# pytest process (so parallel runs and other ROS traffic never meet), and few torch threads.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
os.environ.setdefault('OMP_NUM_THREADS', '2')
# The package's Fast DDS profile, as the node and every command apply it (DESIGN.md section 6),
# so in-process nodes and their probes run the transport a robot runs; a profile or RMW the
# user chose is left alone.
apply_default_dds_profile()


import pytest  # noqa: E402  (after the environment is set)


@pytest.fixture(scope='module')
def micro_checkpoint(tmp_path_factory):
    """Save a random-weight `micro` checkpoint (fixed seed) for node tests."""
    from nova3r_ros.model import get_preset, Nova3r
    import torch

    path = tmp_path_factory.mktemp('ckpt') / 'micro.safetensors'
    torch.manual_seed(2)
    Nova3r(get_preset('micro')).save_checkpoint(path)
    return path


@pytest.fixture(scope='session')
def small_dataset(tmp_path_factory):
    """Three train and two val samples (2 views, 42 x 28, 2 048 GT points) for head refits."""
    from nova3r_ros.data.generate import generate
    from nova3r_ros.data.sample import GeneratorConfig

    root = tmp_path_factory.mktemp('small_dataset')
    cfg = GeneratorConfig(num_views=2, width=42, height=28, num_points=2048)
    generate(root, 'train', [0, 1, 2], cfg, progress=False)
    generate(root, 'val', [1_000_000, 1_000_001], cfg, progress=False)
    return root


def _nodes(node_class, checkpoint):
    """Yield a factory of in-process ``node_class`` nodes; shut them down after."""
    import rclpy
    from rclpy.parameter import Parameter

    created = []
    rclpy.init()

    def factory(**overrides):
        params = [Parameter('checkpoint', value=str(checkpoint))]
        params += [Parameter(k, value=v) for k, v in overrides.items()]
        node = node_class(parameter_overrides=params)
        created.append(node)
        return node

    yield factory
    for node in created:
        assert node.shutdown(timeout=10)
        node.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def make_node(micro_checkpoint):
    """Yield a factory of in-process nodes on the micro checkpoint; shut them down after."""
    from nova3r_ros.ros.node import Nova3rNode

    yield from _nodes(Nova3rNode, micro_checkpoint)


@pytest.fixture
def make_lifecycle_node(micro_checkpoint):
    """Yield the same for managed nodes (unconfigured until a test triggers configure)."""
    from nova3r_ros.ros.node import Nova3rLifecycleNode

    yield from _nodes(Nova3rLifecycleNode, micro_checkpoint)
