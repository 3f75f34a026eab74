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
nova3r_ros: NOVA3R amodal 3D reconstruction as a ROS 2 package.

Subpackages: ``model`` (pure torch), ``io`` (ROS-free message byte layouts), ``data``
(procedural scenes), ``train``, ``evaluation`` and ``ros`` (the thin rclpy layer). Nothing
outside ``ros`` imports rclpy.
"""

__version__ = '0.5.0'
