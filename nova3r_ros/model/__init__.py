"""nova3r_ros.model."""
