"""Session-wide test environment: DDS stays on loopback and on a domain of its own."""

import os

# Set before anything imports rclpy: discovery only on this host, a domain id unique to this
# pytest process (so parallel runs and other ROS traffic never meet), and few torch threads.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
os.environ.setdefault('OMP_NUM_THREADS', '2')
