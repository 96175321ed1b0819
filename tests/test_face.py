import pytest
import torch

from edn.models.face import (
    FaceGenerator,
    FaceGeneratorConfig,
    _boxes,
    _index,
    _paste,
    apply_face,
    boxes_to_tensor,
    clamp_straight_through,
    crop,
    face_discriminator_config,
    feather_mask,
)
from edn.models.networks import MultiscaleDiscriminator

SMALL = FaceGeneratorConfig(ngf=8, n_downsample=2, n_blocks=1)


def paste(frames: torch.Tensor, faces: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor | None = None,
          feather: int | None = None) -> torch.Tensor:
    """apply_face's paste step alone: (B, C, H, W) frames with (B, C, S, S) faces blended into
    their boxes over a feathered border (``feather`` pixels, default S // 8; 0 = hard edge)."""
    boxes, valid, size = _boxes(boxes, valid, frames.shape[-2], frames.shape[-1], frames.device)
    under = frames[_index(boxes, frames.shape[1], size)]
    return _paste(frames, under, faces, boxes, valid, size, feather)[0]


def _frames(b=3, h=48, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


def _nonzero_residual(G: FaceGenerator) -> FaceGenerator:
    torch.manual_seed(1)
    torch.nn.init.normal_(G.net.model[-2].weight, std=0.1)
    return G


def test_crop_shapes_contents_and_edges():
    frames = _frames()
    # middle, top-left corner, bottom-right corner of a 40x48 frame (face_box clamps boxes inside)
    boxes = torch.tensor([[10, 12, 26, 28], [0, 0, 16, 16], [24, 32, 40, 48]], dtype=torch.int32)
    faces = crop(frames, boxes)
    assert faces.shape == (3, 3, 16, 16)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        assert torch.equal(faces[i], frames[i, :, y0:y1, x0:x1])


def test_crop_rejects_mixed_sizes_and_boxes_outside():
    frames = _frames()
    with pytest.raises(AssertionError):
        crop(frames, torch.tensor([[0, 0, 16, 16], [0, 0, 8, 8], [0, 0, 16, 16]]))
    with pytest.raises(AssertionError):
        crop(frames, torch.tensor([[30, 0, 46, 16]] * 3))  # x1 > width 40


def test_round_trip_is_exact():
    frames = _frames()
    boxes = torch.tensor([[10, 12, 26, 28], [0, 0, 16, 16], [24, 32, 40, 48]])
    for feather in (None, 0, 3):
        assert torch.equal(paste(frames, crop(frames, boxes), boxes, feather=feather), frames)


def test_paste_changes_only_the_box_with_a_monotonic_feathered_border():
    frames = _frames(b=1)
    x0, y0, s, feather = 8, 10, 24, 4
    boxes = torch.tensor([[x0, y0, x0 + s, y0 + s]])
    face = torch.full((1, 3, s, s), 0.25)
    out = paste(frames, face, boxes, feather=feather)
    inside = torch.zeros(48, 40, dtype=torch.bool)
    inside[y0:y0 + s, x0:x0 + s] = True
    # outside the box (including the pixels just outside it) nothing changes
    assert torch.equal(out[..., ~inside], frames[..., ~inside])
    # the box's outermost ring is still the frame (weight 0, no seam)
    assert torch.equal(out[..., y0, x0:x0 + s], frames[..., y0, x0:x0 + s])
    assert torch.equal(out[..., y0:y0 + s, x0 + s - 1], frames[..., y0:y0 + s, x0 + s - 1])
    # beyond the feather, the box is the new face exactly
    core = out[..., y0 + feather:y0 + s - feather, x0 + feather:x0 + s - feather]
    assert torch.equal(core, torch.full_like(core, 0.25))
    # in between, each pixel is the blend with the mask's weight, rising monotonically from the edge
    w = feather_mask(s, feather)
    expect = frames[..., y0:y0 + s, x0:x0 + s] * (1 - w) + 0.25 * w
    assert torch.allclose(out[..., y0:y0 + s, x0:x0 + s], expect, atol=1e-6)
    ramp = w[s // 2, : s // 2]
    assert ramp[0] == 0 and ramp[-1] == 1 and bool((ramp[1:] >= ramp[:-1]).all())
    assert bool((ramp[1:feather] > ramp[:feather - 1]).all()) and 0 < ramp[1] < ramp[feather - 1] < 1
    assert torch.equal(w, w.T) and torch.equal(w, w.flip(0))
    # a hard paste puts the face in the whole box
    hard = paste(frames, face, boxes, feather=0)
    assert torch.equal(hard[..., y0:y0 + s, x0:x0 + s], face)
    with pytest.raises(ValueError):
        feather_mask(s, s // 2)  # the centre would never reach 1


def test_invalid_boxes_leave_frames_untouched():
    frames = _frames()
    rows = [[10, 12, 26, 28], None, [24, 32, 40, 48]]
    boxes, valid = boxes_to_tensor(rows)
    assert boxes[1].tolist() == [-1, -1, -1, -1] and valid.tolist() == [True, False, True]
    face = torch.full((3, 3, 16, 16), 0.5)
    for v in (valid, None):  # None: the -1 rows alone mark the missing box
        out = paste(frames, face, boxes, v)
        assert torch.equal(out[1], frames[1])
        assert not torch.equal(out[0], frames[0]) and not torch.equal(out[2], frames[2])
        assert torch.equal(crop(frames, boxes, v)[1], torch.zeros(3, 16, 16))
    # a batch without any face keeps its shapes (the size face_box gives for the height) and its frames
    none_b, none_v = boxes_to_tensor([None] * 3)
    assert crop(frames, none_b, none_v).shape == (3, 3, 12, 12)  # 128 * 48 / 512
    G = _nonzero_residual(FaceGenerator(SMALL))
    final, crops = apply_face(G, _frames(seed=1), frames, none_b, none_v)
    assert torch.equal(final, frames) and not crops["valid"].any()
    final, crops = apply_face(G, _frames(seed=1), frames, boxes, valid)
    assert torch.equal(final[1], frames[1]) and not torch.equal(final[0], frames[0])
    assert torch.equal(crops["pasted"][1], torch.zeros(3, 16, 16))


def test_generator_shapes_and_zero_residual_at_init():
    torch.manual_seed(0)
    G = FaceGenerator(SMALL)
    x = torch.rand(2, 6, 16, 16) * 2 - 1
    assert G(x).shape == (2, 3, 16, 16) and torch.equal(G(x), torch.zeros(2, 3, 16, 16))
    # any crop size, not only multiples of the stride (180 px at 720-high frames)
    assert G(torch.rand(1, 6, 18, 18)).shape == (1, 3, 18, 18)
    assert G(torch.rand(1, 6, 5, 5)).shape == (1, 3, 5, 5)
    # the residual is bounded by residual_scale and can be negative
    G = _nonzero_residual(G)
    with torch.no_grad():
        G.net.model[-2].bias.fill_(-100.0)
    r = G(x)
    assert r.min() >= -2 and r.max() < -1.9


def test_apply_face_is_the_body_output_at_init_and_not_after():
    torch.manual_seed(0)
    pose, body = _frames(seed=1), torch.tanh(_frames(seed=2) * 3)
    boxes = torch.tensor([[10, 12, 26, 28], [0, 0, 16, 16], [24, 32, 40, 48]])
    G = FaceGenerator(SMALL)
    final, crops = apply_face(G, pose, body, boxes)
    assert torch.equal(final, body)
    assert {k: tuple(v.shape) for k, v in crops.items()} == {
        "pose": (3, 3, 16, 16), "body": (3, 3, 16, 16), "residual": (3, 3, 16, 16), "face": (3, 3, 16, 16),
        "pasted": (3, 3, 16, 16), "valid": (3,)}
    assert torch.equal(crops["pose"], crop(pose, boxes)) and torch.equal(crops["pasted"], crop(final, boxes))
    G = _nonzero_residual(G)
    final, crops = apply_face(G, pose, body, boxes)
    assert not torch.equal(final, body) and final.abs().max() <= 1
    assert torch.equal(crops["pasted"], crop(final, boxes))
    assert torch.equal(final, paste(body, crops["face"], boxes))  # the same paste as paste()
    assert torch.equal(crops["face"], (crops["body"] + crops["residual"]).clamp(-1, 1))


def test_a_face_generator_with_a_reference_lays_its_face_over_where_its_opacity_says():
    """face = (body + residual) blended toward the reference's face box by the opacity: 1.8% at the
    start, all of it at opacity 1; the reference face is an input too."""
    torch.manual_seed(0)
    pose, body = _frames(seed=1), torch.tanh(_frames(seed=2) * 3)
    boxes = torch.tensor([[10, 12, 26, 28], [0, 0, 16, 16], [24, 32, 40, 48]])
    reference = _frames(b=3, h=16, w=16, seed=4)
    G = FaceGenerator(FaceGeneratorConfig(ngf=8, n_downsample=2, n_blocks=1, reference=True))
    assert G.net.model[1].in_channels == 9
    with torch.no_grad():
        final, crops = apply_face(G, pose, body, boxes, reference_face=reference)
        start = torch.sigmoid(torch.tensor(-4.0))
        assert torch.allclose(crops["face"], crops["body"] + start * (reference - crops["body"]))
        G.net.model[-2].bias[3:].fill_(100.0)  # opacity 1: the reference's face box
        final, crops = apply_face(G, pose, body, boxes, reference_face=reference)
        assert torch.allclose(crops["face"], reference)
        G = _nonzero_residual(G)  # what it draws depends on the reference it is shown
        faces = [apply_face(G, pose, body, boxes, reference_face=r)[1]["residual"] for r in (reference, -reference)]
    assert not torch.allclose(*faces)


def test_gradient_reaches_the_face_generator_through_paste():
    torch.manual_seed(0)
    G = FaceGenerator(SMALL)
    pose, body, real = _frames(seed=1), _frames(seed=2), _frames(seed=3)
    boxes = torch.tensor([[10, 12, 26, 28], [0, 0, 16, 16], [24, 32, 40, 48]])
    opt = torch.optim.SGD(G.parameters(), lr=0.1)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        final, _ = apply_face(G, pose, body, boxes)
        loss = (final - real).abs().mean()  # through the pasted frame only
        loss.backward()
        losses.append(loss.item())
        if len(losses) == 1:  # step 0: only the zero-initialised last conv has a gradient
            assert G.net.model[-2].weight.grad.abs().sum() > 0
        opt.step()
    convs = [m for m in G.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(m.weight.grad.abs().sum() > 0 for m in convs)
    assert losses[1] < losses[0]


def test_straight_through_clamp():
    x = torch.tensor([-3.0, -0.5, 0.5, 1.5], requires_grad=True)
    y = clamp_straight_through(x)
    assert y.tolist() == [-1.0, -0.5, 0.5, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_face_discriminator_on_crops():
    D = MultiscaleDiscriminator(face_discriminator_config(ndf=8))
    pose, body = _frames(seed=1), _frames(seed=2)
    boxes = torch.tensor([[10, 12, 42, 44]] * 3)
    pose, body = torch.nn.functional.pad(pose, (0, 8)), torch.nn.functional.pad(body, (0, 8))  # 48x48
    out = D(torch.cat([crop(pose, boxes), crop(body, boxes)], 1))
    assert len(out) == 1 and out[0][-1].shape[:2] == (3, 1)
