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
Bag replay evaluation: player + nova3r node + recorder, started by ros2 launch.

    ros2 launch nova3r_ros replay.launch.py bag:=bags/room record_out:=bags/room_out rate:=0.25
    nova3r_eval --bag-input bags/room --bag-recording bags/room_out --out bag_eval

Launch arguments:
  bag                the rosbag2 to play (nova3r_bag make, or your own with GT)
  record_out         directory of the MCAP recording to create (must not exist)
  rate               playback rate (slow CPUs: 0.05-0.25 so the node keeps up)
  params_file        node parameters (default: the package's config/nova3r.yaml)
  checkpoint         model file ('' = the params file's, whose default is the shipped model)
  image_topic        camera topic remapped to the node's 'image' input
  camera_info_topic  CameraInfo topic remapped to the node's 'camera_info' input
  depth_topic        the bag's depth topic ('' = none; then scale_mode auto is normalized);
                     always passed, so it replaces the params file's depth_topic

The player waits until the node subscribes to the images (the model is loaded) and the node and
recorder to /clock; the node runs on sim time; the recorder stops after /clock went silent,
and the whole launch shuts down when it exits. Where launch is not installed, ``nova3r_demo``
runs the same three processes.

"""

import os

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from nova3r_ros.params import launch_overrides

PACKAGE = 'nova3r_ros'


def _default_params_file() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory(PACKAGE), 'config', 'nova3r.yaml')
    except Exception:  # noqa: BLE001 - not installed: the source tree's copy
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'config', 'nova3r.yaml')


def _node(context: LaunchContext) -> list[Node]:
    """Build the node: sim time and the bag's depth topic always, the checkpoint when given."""
    given = {'checkpoint': LaunchConfiguration('checkpoint').perform(context)}
    return [Node(
        package=PACKAGE, executable='nova3r_node', name='nova3r', output='screen',
        parameters=[LaunchConfiguration('params_file'),
                    {'use_sim_time': True,
                     'depth_topic': LaunchConfiguration('depth_topic').perform(context),
                     **launch_overrides(given)}],
        remappings=[('image', LaunchConfiguration('image_topic')),
                    ('camera_info', LaunchConfiguration('camera_info_topic'))])]


def generate_launch_description() -> LaunchDescription:
    """Player, node and recorder; shutdown when the recorder is done."""
    bag = LaunchConfiguration('bag')
    record_out = LaunchConfiguration('record_out')
    rate = LaunchConfiguration('rate')
    image_topic = LaunchConfiguration('image_topic')

    recorder = Node(
        package=PACKAGE, executable='nova3r_bag', output='screen',
        arguments=['record', '--out', record_out, '--stop-on-clock-silence', '2',
                   '--linger', '10', '--use-sim-time'])
    player = Node(
        package=PACKAGE, executable='nova3r_bag', output='screen',
        arguments=['play', bag, '--rate', rate, '--wait-for', image_topic,
                   '--wait-for', '/clock=2', '--clock-tail', '2'])
    return LaunchDescription([
        DeclareLaunchArgument('bag', description='rosbag2 directory to play'),
        DeclareLaunchArgument('record_out', description='MCAP recording directory to create'),
        DeclareLaunchArgument('rate', default_value='0.25', description='playback rate'),
        DeclareLaunchArgument('params_file', default_value=_default_params_file(),
                              description='YAML file with the node parameters (/** keyed)'),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description="Model checkpoint ('' = the params file's)"),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description="Topic remapped to the node's 'image' input"),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description="Topic remapped to the node's 'camera_info' input"),
        DeclareLaunchArgument('depth_topic', default_value='/camera/depth/image_raw',
                              description="Depth topic for scale_mode depth ('' = none)"),
        OpaqueFunction(function=_node),
        recorder,
        player,
        RegisterEventHandler(OnProcessExit(target_action=recorder, on_exit=[Shutdown()])),
    ])
