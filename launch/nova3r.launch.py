"""
Launch the nova3r node on a robot: ros2 launch nova3r_ros nova3r.launch.py.

Launch arguments:
  params_file      YAML parameters (default: the package's config/nova3r.yaml)
  namespace        node namespace (outputs become /<ns>/nova3r/points ...)
  use_sim_time     true when replaying a bag with --clock
  image_topic      remap of the node's 'image' input (camera 0) to your camera topic
  camera_info_topic  remap of 'camera_info' (camera 0's CameraInfo)
  checkpoint       model file ('' = the shipped model)
  device           auto | cpu | cuda | cuda:<index>

With several cameras set ``image_topics`` in the params file (their names are remappable with
ordinary ``--ros-args -r`` rules). The package's Fast DDS profile is applied by the node's own
``main()`` unless the environment already names one.

"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = 'nova3r_ros'


def _default_params_file() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory(PACKAGE), 'config', 'nova3r.yaml')
    except Exception:  # noqa: BLE001 - not installed: the source tree's copy
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'config', 'nova3r.yaml')


def generate_launch_description() -> LaunchDescription:
    """Launch the node with its parameters file, sim time, namespace and input remaps."""
    params_file = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    use_sim_time = LaunchConfiguration('use_sim_time')
    image_topic = LaunchConfiguration('image_topic')
    camera_info_topic = LaunchConfiguration('camera_info_topic')
    checkpoint = LaunchConfiguration('checkpoint')
    device = LaunchConfiguration('device')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=_default_params_file(),
                              description='YAML file with the node parameters (/** keyed)'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Use /clock (bag replay with --clock)'),
        DeclareLaunchArgument('image_topic', default_value='image',
                              description="Topic the node's 'image' input is remapped to"),
        DeclareLaunchArgument('camera_info_topic', default_value='camera_info',
                              description="Topic the node's 'camera_info' input is remapped to"),
        DeclareLaunchArgument('checkpoint', default_value='',
                              description="Model checkpoint ('' = the shipped model)"),
        DeclareLaunchArgument('device', default_value='auto',
                              description='auto | cpu | cuda | cuda:<index>'),
        Node(
            package=PACKAGE,
            executable='nova3r_node',
            name='nova3r',
            namespace=namespace,
            output='screen',
            emulate_tty=True,
            parameters=[
                params_file,
                {'use_sim_time': ParameterValue(use_sim_time, value_type=bool),
                 'checkpoint': ParameterValue(checkpoint, value_type=str),
                 'device': ParameterValue(device, value_type=str)},
            ],
            remappings=[('image', image_topic), ('camera_info', camera_info_topic)],
        ),
    ])
