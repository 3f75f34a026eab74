"""nova3r_ros.data."""
