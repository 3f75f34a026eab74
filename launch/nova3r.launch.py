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
Launch the nova3r node on a robot: ros2 launch nova3r_ros nova3r.launch.py.

Launch arguments:
  params_file      YAML parameters (default: the package's config/nova3r.yaml)
  namespace        node namespace (outputs become /<ns>/nova3r/points ...)
  use_sim_time     true when replaying a bag with --clock ('' = the params file's)
  image_topic      remap of the node's 'image' input (camera 0) to your camera topic
  camera_info_topic  remap of 'camera_info' (camera 0's CameraInfo)
  depth_topic      registered depth image of camera 0 for a metric cloud ('' = the params
                   file's, default none: then the cloud is in model units)
  checkpoint       model file ('' = the params file's, whose default is the shipped model)
  device           auto | cpu | cuda | cuda:<index> ('' = the params file's, default auto)
  precision        auto | fp32 | bf16 ('' = the params file's, default auto: bf16 on a GPU
                   with native bf16, fp32 elsewhere; fp32 for e.g. a Jetson Xavier)
  rviz             true: also start RViz 2 with the package's view (config/nova3r.rviz; it
                   shows /nova3r/points: with a namespace, pick the topics in RViz)
  rviz_fixed_frame RViz fixed frame (default camera_optical_frame, the demo bag's camera)
  lifecycle        true: a managed node (nova3r_node --lifecycle) that waits unconfigured for
                   a lifecycle manager (e.g. Nav2's, node_names: [nova3r])

With several cameras set ``image_topics`` in the params file (their names are remappable with
ordinary ``--ros-args -r`` rules). The package's Fast DDS profile is applied by the node's own
``main()`` unless the environment already names one; RViz gets it through its environment
(clouds of 100k points outgrow stock Fast DDS's shared-memory segment). Only the arguments
given are passed after the params file (``params.launch_overrides``): launch_ros applies later
entries over earlier ones, so an unconditional default would replace the file's value.

"""

import os

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from nova3r_ros.params import launch_overrides
from nova3r_ros.ros.dds import profile_env

PACKAGE = 'nova3r_ros'


def _config_file(name: str) -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory(PACKAGE), 'config', name)
    except Exception:  # noqa: BLE001 - not installed: the source tree's copy
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'config', name)


def _nodes(context: LaunchContext) -> list[Node]:
    """Build the node (params file, then only the overrides given) and RViz on request."""
    given = {name: LaunchConfiguration(name).perform(context)
             for name in ('use_sim_time', 'checkpoint', 'device', 'precision', 'depth_topic')}
    sim_time = launch_overrides({'use_sim_time': given['use_sim_time']})
    managed = LaunchConfiguration('lifecycle').perform(context).strip().lower()
    if managed not in ('true', 'false'):
        raise ValueError(f'launch argument lifecycle must be true or false, got {managed!r}')
    return [Node(
        package=PACKAGE,
        executable='nova3r_node',
        name='nova3r',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        arguments=['--lifecycle'] if managed == 'true' else [],
        parameters=[LaunchConfiguration('params_file'), launch_overrides(given)],
        remappings=[('image', LaunchConfiguration('image_topic')),
                    ('camera_info', LaunchConfiguration('camera_info_topic'))],
    ), Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        arguments=['-d', _config_file('nova3r.rviz'), '-f',
                   LaunchConfiguration('rviz_fixed_frame')],
        parameters=[sim_time],
        additional_env=profile_env(),
        condition=IfCondition(LaunchConfiguration('rviz')),
    )]


def generate_launch_description() -> LaunchDescription:
    """Launch the node with its parameters file, sim time, namespace and input remaps."""
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=_config_file('nova3r.yaml'),
                              description='YAML file with the node parameters (/** keyed)'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node'),
        DeclareLaunchArgument('use_sim_time', default_value='',
                              description="Use /clock (bag replay with --clock); '' = the "
                                          "params file's (default false)"),
        DeclareLaunchArgument('image_topic', default_value='image',
                              description="Topic the node's 'image' input is remapped to"),
        DeclareLaunchArgument('camera_info_topic', default_value='camera_info',
                              description="Topic the node's 'camera_info' input is remapped to"),
        DeclareLaunchArgument('depth_topic', default_value='',
                              description="Registered depth of camera 0 for a metric cloud ('' "
                                          "= the params file's, default none)"),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description="Model checkpoint ('' = the params file's, default "
                                          'the shipped model)'),
        DeclareLaunchArgument('device', default_value='',
                              description="auto | cpu | cuda | cuda:<index> ('' = the params "
                                          "file's, default auto)"),
        DeclareLaunchArgument('precision', default_value='',
                              description="auto | fp32 | bf16 ('' = the params file's, default "
                                          'auto)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start RViz 2 with config/nova3r.rviz'),
        DeclareLaunchArgument('rviz_fixed_frame', default_value='camera_optical_frame',
                              description='RViz fixed frame: the cloud frame or one TF links'),
        DeclareLaunchArgument('lifecycle', default_value='false',
                              description='true: a managed (lifecycle) node, configured and '
                                          'activated by a lifecycle manager'),
        OpaqueFunction(function=_nodes),
    ])
