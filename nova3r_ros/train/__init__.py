"""nova3r_ros.train."""
