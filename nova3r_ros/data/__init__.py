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
nova3r_ros.data: synthetic amodal scenes, ray-cast views, ground truth, dataset files, bags.

furniture.py    primitives, procedural materials, furniture generators
scene.py        procedural rooms / single objects from primitives (manifold3d union)
render.py       pinhole cameras and the Embree ray-cast renderer (RGB, depth, instance ids)
cameras.py      robot trajectories through a room, orbits around an object
groundtruth.py  uniform surface samples, frustum crop, per-view visibility, median_3
sample.py       one sample from a seed (GeneratorConfig, make_sample)
dataset.py      npz writer/reader, select_views, SceneDataset (format: docs/dataset.md)
generate.py     nova3r_generate CLI;  preview.py, stats.py: PNG previews, occlusion statistics
bag_export.py   rosbag2 export of a drive through one room
"""
