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

"""ament_python packaging for nova3r_ros (colcon build, or pip install -e . in the venv)."""

from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'nova3r_ros'

setup(
    name=package_name,
    version='0.5.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={'nova3r_ros.train': ['configs/*.yaml']},  # nova3r_train --config presets
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), glob('launch/*launch.[pxy][yma]*')),
        (os.path.join('share', package_name, 'config'),
         glob('config/*.yaml') + glob('config/*.xml') + glob('config/*.rviz')),
        (os.path.join('share', package_name, 'checkpoints'),
         glob('checkpoints/*.safetensors') + glob('checkpoints/*.md')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='nova3r_ros developers',
    maintainer_email='nova3r-ros@example.com',
    description='NOVA3R amodal 3D reconstruction from unposed images as a ROS 2 node.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'nova3r_node = nova3r_ros.ros.node:entry',
            'nova3r_generate = nova3r_ros.data.generate:main',
            'nova3r_train = nova3r_ros.train.cli:main',
            'nova3r_eval = nova3r_ros.evaluation.cli:main',
            'nova3r_bag = nova3r_ros.ros.bag:main',
            'nova3r_bench = nova3r_ros.bench:main',
            'nova3r_demo = nova3r_ros.demo:main',
            'nova3r_soak = nova3r_ros.ros.soak:main',
        ],
    },
)
