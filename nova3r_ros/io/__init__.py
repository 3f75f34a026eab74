"""nova3r_ros.io."""
