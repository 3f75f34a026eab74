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
