"""nova3r_ros.evaluation."""
