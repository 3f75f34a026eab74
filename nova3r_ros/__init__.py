"""
nova3r_ros: NOVA3R amodal 3D reconstruction as a ROS 2 package.

Subpackages: ``model`` (pure torch), ``io`` (ROS-free message byte layouts), ``data``
(procedural scenes), ``train``, ``evaluation`` and ``ros`` (the thin rclpy layer). Nothing
outside ``ros`` imports rclpy.
"""

__version__ = '0.1.0'
