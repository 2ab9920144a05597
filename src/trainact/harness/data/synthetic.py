"""The built-in synthetic set: oriented patterns per class, seeded, no files (the harness's default data).

`synthetic_dataset(**options)` is an ImageDataset, the same for the same options; SYNTHETIC_PARAMS are the options
it takes (its `image_size` is the generated images' side, fed as stored).
"""

from __future__ import annotations

import math

import torch

from .dataset import DataError, ImageDataset, channel_stats, mix_seed

# ----------------------------------------------------------------------------------------------------
# the synthetic set

SYNTHETIC_PARAMS = ("seed", "num_classes", "train_size", "test_size", "image_size", "channels")
_PATTERNS = ("grating", "plaid", "checker", "rings")
# the knobs that set how hard the synthetic set is: chosen so that the default `trainact compare` (a width-8
# ResNet-18, SGD lr 0.08, 4 epochs) leaves chance on every seed tried, far from 100 %
_DIFFICULTY = dict(theta_jitter=0.08, freq_jitter=0.10, window=(0.3, 0.6), clutter=0.2, noise=(0.05, 0.15),
                   contrast=(0.15, 1.0))


def _class_prototypes(num_classes: int) -> dict[str, torch.Tensor]:
    """Fixed per-class structure (independent of the seed): pattern kind, orientation, frequency, angle."""
    c = torch.arange(num_classes, dtype=torch.float64)
    golden = (math.sqrt(5) - 1) / 2
    return dict(
        kind=torch.arange(num_classes) % len(_PATTERNS),
        theta=math.pi * ((c * golden) % 1.0),  # well spread orientations for any K
        freq=3.5 + 4.5 * ((c * golden * 3.7 + 0.31) % 1.0),  # cycles per image, 3.5 .. 8
        delta=math.pi * (0.25 + 0.25 * ((c * golden * 1.9) % 1.0)),  # second grating at +45 .. 90 degrees
    )


def _synthetic_images(n: int, g: torch.Generator, num_classes: int, size: int, channels: int, difficulty: dict):
    """n images (n, C, S, S) uint8 and labels (n,) int64; every random draw comes from `g`, in a fixed order."""
    proto = _class_prototypes(num_classes)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    two_pi = 2 * math.pi

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5  # pixel centres in [-0.5, 0.5)
    xx = coords.view(1, 1, 1, size)
    yy = coords.view(1, 1, size, 1)

    def wave(freq: torch.Tensor, theta: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """sin(2 pi f (x cos t + y sin t) + phase) for m parameter sets (m,) -> (m, 1, S, S)."""
        m = freq.shape[0]
        ax = (two_pi * freq * torch.cos(theta)).view(m, 1, 1, 1) * xx + phase.view(m, 1, 1, 1)  # (m, 1, 1, S)
        ay = (two_pi * freq * torch.sin(theta)).view(m, 1, 1, 1) * yy  # (m, 1, S, 1)
        return torch.sin(ax + ay)  # (m, 1, S, S)

    # every draw is made for all n images, so the stream does not depend on the class mix
    kind = proto["kind"][labels]
    theta = proto["theta"][labels].float() + difficulty["theta_jitter"] * torch.randn(n, generator=g)
    freq = proto["freq"][labels].float() * torch.exp(difficulty["freq_jitter"] * torch.randn(n, generator=g))
    theta2 = theta + proto["delta"][labels].float()
    phase1, phase2 = u(0, two_pi), u(0, two_pi)
    cy, cx = u(-0.3, 0.3), u(-0.3, 0.3)
    sigma = u(*difficulty["window"])
    d_freq, d_theta, d_phase, d_amp = u(1.5, 7.5), u(0, math.pi), u(0, two_pi), u(0.0, difficulty["clutter"])
    e_theta, e_offset, e_sharp, e_amp = u(0, two_pi), u(-0.3, 0.3), u(5, 40), u(0.0, difficulty["clutter"])
    noise_std = u(*difficulty["noise"])
    tint1, tint2 = u(0.3, 1.0, channels), u(0.3, 1.0, channels)  # (n, C) random colours
    contrast = torch.exp(u(*(math.log(c) for c in difficulty["contrast"])))  # log-uniform
    room = 0.5 * 0.7 * contrast  # brightness keeps most of the pattern inside [0, 1]; some clipping stays
    brightness = room + (1 - 2 * room) * torch.rand(n, generator=g)
    colour_shift = u(-0.1, 0.1, channels) * contrast.view(n, 1)  # (n, C)
    noise = torch.randn(n, channels, size, size, generator=g)

    # the class structure: one texture per class, computed only for the images of each kind; every kind has
    # about the RMS of a sinusoid, so the pixel statistics do not give the class away
    pattern = torch.empty(n, 1, size, size)
    r2 = (yy - cy.view(n, 1, 1, 1)) ** 2 + (xx - cx.view(n, 1, 1, 1)) ** 2  # (n, 1, S, S) distance² to the window centre
    for k, name in enumerate(_PATTERNS):
        i = (kind == k).nonzero().squeeze(1)
        if i.numel() == 0:
            continue
        if name == "grating":
            p = wave(freq[i], theta[i], phase1[i])
        elif name == "plaid":
            p = (wave(freq[i], theta[i], phase1[i]) + wave(freq[i], theta2[i], phase2[i])) / math.sqrt(2)
        elif name == "checker":
            p = torch.tanh(3 * wave(freq[i], theta[i], phase1[i]) * wave(freq[i], theta2[i], phase2[i]))
        else:  # rings around the window centre
            p = torch.sin(two_pi * freq[i].view(-1, 1, 1, 1) * r2[i].sqrt() + phase1[i].view(-1, 1, 1, 1))
        pattern[i] = p
    pattern *= torch.exp(r2 * (-0.5 / sigma**2).view(n, 1, 1, 1))  # in a random Gaussian window
    # class-independent clutter: a random grating and a random soft edge
    edge = torch.tanh(
        (xx * torch.cos(e_theta).view(n, 1, 1, 1) + yy * torch.sin(e_theta).view(n, 1, 1, 1) - e_offset.view(n, 1, 1, 1))
        * e_sharp.view(n, 1, 1, 1)
    )  # (n, 1, S, S)
    clutter = wave(d_freq, d_theta, d_phase) * d_amp.view(n, 1, 1, 1) + edge * e_amp.view(n, 1, 1, 1)

    # colour, noise, then contrast and brightness; the amplitude bound keeps the signal within [-1, 1] mostly
    bound = 1.0 + d_amp + e_amp + 2.0 * noise_std  # (n,)
    gain = (0.5 * 255.0 * contrast / bound).view(n, 1, 1, 1)
    images = pattern * tint1.view(n, channels, 1, 1)  # (n, C, S, S)
    images.addcmul_(clutter, tint2.view(n, channels, 1, 1))
    images.addcmul_(noise, noise_std.view(n, 1, 1, 1))
    images.mul_(gain).add_((255.0 * (brightness.view(n, 1) + colour_shift)).view(n, channels, 1, 1))
    images = images.round_().clamp_(0, 255).to(torch.uint8)
    return images.contiguous(), labels.to(torch.int64)


def synthetic_dataset(
    *,
    seed: int = 0,
    num_classes: int = 10,
    train_size: int = 5000,
    test_size: int = 1000,
    image_size: int = 32,
    channels: int = 3,
) -> ImageDataset:
    """A seeded, procedurally generated classification set (no files; deterministic given the arguments).

    Each class is a fixed texture (an oriented grating, a plaid, a checkerboard-like product of two gratings,
    or concentric rings, each with its own orientation and spatial frequency), shown in a random Gaussian
    window at a random position and phase, with orientation/frequency jitter, class-independent clutter
    (a random grating and a random edge), random colours and pixel noise. Class identity is in the structure
    only: every image gets a log-uniform random contrast in 0.15..1 and a random brightness, so dim, faint and
    bright images are common, which is the situation TrAct is about. Labels are balanced (i mod K, shuffled).
    """
    for key, value, lo in (
        ("num_classes", num_classes, 2),
        ("train_size", train_size, 1),
        ("test_size", test_size, 1),
        ("image_size", image_size, 4),
        ("channels", channels, 1),
    ):
        if not isinstance(value, int) or value < lo:
            raise DataError(f"synthetic dataset {key} must be an int >= {lo}, got {value!r}")
    g = torch.Generator().manual_seed(mix_seed(seed, "synthetic"))
    train_images, train_labels = _synthetic_images(train_size, g, num_classes, image_size, channels, _DIFFICULTY)
    test_images, test_labels = _synthetic_images(test_size, g, num_classes, image_size, channels, _DIFFICULTY)
    mean, std = channel_stats(train_images)
    proto = _class_prototypes(num_classes)
    classes = [f"{_PATTERNS[int(k)]}-{i}" for i, k in enumerate(proto["kind"])]
    return ImageDataset(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
        mean=mean,
        std=std,
        name="synthetic",
        source=(
            f"synthetic(seed={seed}, num_classes={num_classes}, train_size={train_size}, test_size={test_size}, "
            f"image_size={image_size}, channels={channels})"
        ),
    )
