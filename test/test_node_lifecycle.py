# Copyright 2026 nova3r_ros developers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The managed node (``nova3r_node --lifecycle``): real rclpy lifecycle transitions, in process.

Checks what a lifecycle manager relies on: nothing is loaded or subscribed before configure, a
bad checkpoint fails configure and leaves the node up, a cloud comes out only while active,
deactivate / activate cycles work, cleanup frees the model.
"""

import time

from nova3r_ros.ros import msgs
from nova3r_ros.ros.node import stamp_msg
import numpy as np
import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import Header

NS = 1_000_000_000


def _feed_and_wait(node, stamps_s, timeout=60.0):
    """Hand frames to the image callback; return the clouds published meanwhile."""
    published = []
    node.pub_points.publish = published.append
    callback = next(s.callback for s in node.subscriptions if s.topic_name == '/image')
    rgb = np.random.default_rng(0).integers(0, 256, (28, 42, 3), dtype=np.uint8)
    for t in stamps_s:
        header = Header(frame_id='cam_optical', stamp=stamp_msg(int(t * NS)))
        callback(msgs.numpy_to_image_msg(rgb, 'rgb8', header))
    deadline = time.monotonic() + timeout
    while not published and time.monotonic() < deadline:
        time.sleep(0.05)
    return published


def test_transitions_load_run_stop_and_free(make_lifecycle_node):
    node = make_lifecycle_node(window_size=1, num_points=256, num_steps=2,
                               keyframe_min_interval=0.0, keyframe_change_threshold=0.0,
                               skip_without_subscribers=False)
    # unconfigured: no model, no camera subscription
    assert not hasattr(node, 'model')
    assert not [s for s in node.subscriptions if s.topic_name == '/image']
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.model.cfg.name == 'micro'
    assert not [s for s in node.subscriptions if s.topic_name == '/image']
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    clouds = _feed_and_wait(node, [1.0])
    assert clouds and clouds[0].header.frame_id == 'cam_optical', node.worker.last_error
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert not [s for s in node.subscriptions if s.topic_name == '/image']
    assert not node.worker.alive and node.worker.model is None
    # a second activation starts fresh threads on the model still loaded
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert _feed_and_wait(node, [2.0]), node.worker.last_error
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert not hasattr(node, 'model')
    # and it can be configured again
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.model.cfg.name == 'micro'


def test_a_bad_checkpoint_fails_configure_and_the_node_stays_up(make_lifecycle_node,
                                                                tmp_path):
    node = make_lifecycle_node(checkpoint=str(tmp_path / 'missing.safetensors'))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert not hasattr(node, 'model')
    assert node.shutdown(timeout=5)  # nothing to stop: still clean


def test_a_check_after_loading_fails_configure_and_frees_the_model(make_lifecycle_node,
                                                                   tmp_path):
    from nova3r_ros.model import get_preset, Nova3r

    cfg = get_preset('micro')
    cfg.max_views = 2  # so 3 views per window are refused only once the file is loaded
    two_views = tmp_path / 'two_views.safetensors'
    Nova3r(cfg).save_checkpoint(str(two_views))
    node = make_lifecycle_node(checkpoint=str(two_views), window_size=3)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert not hasattr(node, 'model')


def test_node_help_names_the_lifecycle_flag(capsys):
    from nova3r_ros.ros.node import _parse_args

    assert _parse_args(['--lifecycle']).lifecycle and not _parse_args([]).lifecycle
    with pytest.raises(SystemExit):
        _parse_args(['--help'])
    assert '--lifecycle' in capsys.readouterr().out


@pytest.mark.slow
def test_a_lifecycle_manager_drives_the_node_process_over_ros(micro_checkpoint):
    """``nova3r_node --lifecycle`` as Nav2's manager sees it: the standard lifecycle services."""
    import signal
    import subprocess

    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from nova3r_ros.ros.node_harness import node_command

    command = node_command({'checkpoint': str(micro_checkpoint)})
    command.insert(3, '--lifecycle')  # python -m nova3r_ros.ros.node --lifecycle --ros-args
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        from rclpy.executors import SingleThreadedExecutor

        manager = rclpy.create_node('lifecycle_manager_probe', context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(manager)
        get_state = manager.create_client(GetState, '/nova3r/get_state')
        change_state = manager.create_client(ChangeState, '/nova3r/change_state')

        def call(client, request):
            assert client.wait_for_service(timeout_sec=60), 'no lifecycle service'
            for _ in range(6):  # a request sent before the reply path matched is lost: resend
                future = client.call_async(request)
                executor.spin_until_future_complete(future, timeout_sec=10)
                if future.done():
                    return future.result()
                client.remove_pending_request(future)
            raise AssertionError(f'{client.srv_name}: no reply in 60 s')

        def transition(transition_id):
            return call(change_state, ChangeState.Request(
                transition=Transition(id=transition_id))).success

        def state():
            return call(get_state, GetState.Request()).current_state.id

        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        deadline = time.monotonic() + 30
        while (not manager.get_publishers_info_by_topic('/nova3r/points')
               and time.monotonic() < deadline):
            time.sleep(0.1)
        assert manager.get_publishers_info_by_topic('/nova3r/points')
        assert manager.get_subscriptions_info_by_topic('/image')
        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        executor.shutdown()
        manager.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert 'Traceback' not in output, output
