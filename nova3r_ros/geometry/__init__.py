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
nova3r_ros.geometry: cloud geometry the node and the evaluation share (numpy, scipy; no ROS).

- `align`: a scale + 3D shift fitted by unsquared Chamfer (the evaluation's alignment, and the
  node's ``chamfer`` depth fits).
- `scale`: the node's scale modes, from model units to metres (depth image, fixed, normalized).
- `depth_check`: snapping visible points onto view 1's depth image, after the depth scale.

One home for both users, so the evaluation scores exactly the node's steps and neither layer
imports the other.
"""
