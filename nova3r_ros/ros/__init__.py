"""nova3r_ros.ros."""
