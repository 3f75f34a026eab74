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

"""The sampler experiments (`tools/sampling_study.py`) patch what their docs claim."""


from doubles import load_tool
from nova3r_ros.model import density, flow, get_preset, Nova3r
from nova3r_ros.model import nova3r as nova3r_module
import pytest
import torch


def _study():
    return load_tool('sampling_study')


def test_guided_velocity_extrapolates_from_the_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Nova3r, 'velocity', Nova3r.velocity)  # undone after the test
    torch.manual_seed(0)
    model = Nova3r(get_preset('micro')).eval()
    with torch.no_grad():
        model.mean_scene_tokens.normal_()
        for param in model.decoder.parameters():  # zero-initialised gates would hide the tokens
            param.normal_(0.0, 0.2)
    cfg = model.cfg
    tokens = torch.randn(2, cfg.num_scene_tokens, cfg.latent_dim)
    xt, t = torch.rand(2, 50, 3) * 2 - 1, torch.tensor([0.3, 0.8])
    with torch.no_grad():
        cond = model.velocity(tokens, xt, t)
        uncond = model.velocity(model.prior_scene_tokens(2), xt, t)
        assert not torch.allclose(cond, uncond, atol=1e-4)  # the prior really differs
        _study().guide(2.0)
        guided = model.velocity(tokens, xt, t)
    torch.testing.assert_close(guided, 2.0 * cond - uncond, atol=1e-4, rtol=1e-4)


def test_weight_one_leaves_the_model_alone_and_bad_weights_are_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Nova3r, 'velocity', Nova3r.velocity)
    plain = Nova3r.velocity
    study = _study()
    study.guide(1.0)
    assert Nova3r.velocity is plain
    for bad in (float('nan'), -0.5, 11.0):
        with pytest.raises(ValueError, match='guidance'):
            study.guide(bad)


def test_neighbours_patch_reaches_the_density_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Nova3r, 'sample', Nova3r.sample)
    seen = []
    real = density.keep_densest

    def spy(points, keep, neighbours=8):
        seen.append(neighbours)
        return real(points, keep, neighbours)

    monkeypatch.setattr(density, 'keep_densest', spy)
    torch.manual_seed(0)
    model = Nova3r(get_preset('micro')).eval()
    study = _study()
    study.filter_neighbours(16)
    model.sample(model.prior_scene_tokens(1), 40, num_steps=1, visibility=False, oversample=1.5)
    assert seen == [16]
    for bad in (0, 65):
        with pytest.raises(ValueError, match='neighbours'):
            study.filter_neighbours(bad)


def test_noise_scale_shrinks_the_starting_cube(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow, 'sample_noise', flow.sample_noise)  # undone after the test
    unpatched = flow.sample_noise
    plain = flow.sample_noise((4, 1000, 3), torch.Generator().manual_seed(3))
    study = _study()
    study.scale_noise(1.0)
    assert flow.sample_noise is unpatched
    study.scale_noise(0.5)
    scaled = flow.sample_noise((4, 1000, 3), torch.Generator().manual_seed(3))
    torch.testing.assert_close(scaled, plain * 0.5)
    assert scaled.abs().max() <= 0.5
    from_sampler = nova3r_module._noise((1, 1000, 3), None, torch.device('cpu'))
    assert from_sampler.abs().max() <= 0.5 < 2 * from_sampler.abs().max()  # the sampler's draw
    for bad in (0.0, -1.0, 2.5, float('inf')):
        with pytest.raises(ValueError, match='noise-scale'):
            study.scale_noise(bad)


def test_help_names_the_tools_options_and_the_evaluations(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        _study().main(['--help'])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert '--guidance' in out and '--neighbours' in out and '--checkpoint' in out
