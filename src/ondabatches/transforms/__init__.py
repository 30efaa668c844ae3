"""Featurization on the data path: transforms applied where the windows are read.

- [`Transform`][ondabatches.transforms.Transform],
  [`register_transform`][ondabatches.transforms.register_transform]: the interface and
  the registry of transforms (a custom one registers by name, like formats and
  selectors);
- [`Pipeline`][ondabatches.transforms.Pipeline]: an ordered list of them, JSON in a state's config;
- [`TransformedBatches`][ondabatches.transforms.TransformedBatches]: a batch scheme
  whose batches carry the pipeline and the key their random transforms draw from
  (``Batcher(..., transforms=...)`` uses it);
- built-ins: zero-phase filters ([`Bandpass`][ondabatches.transforms.Bandpass],
  [`Highpass`][ondabatches.transforms.Highpass],
  [`Lowpass`][ondabatches.transforms.Lowpass], [`Notch`][ondabatches.transforms.Notch]),
  [`Normalize`][ondabatches.transforms.Normalize],
  [`Spectrogram`][ondabatches.transforms.Spectrogram], and the augmentations
  [`AmplitudeScale`][ondabatches.transforms.AmplitudeScale],
  [`SignFlip`][ondabatches.transforms.SignFlip],
  [`TimeReverse`][ondabatches.transforms.TimeReverse],
  [`ChannelDropout`][ondabatches.transforms.ChannelDropout],
  [`GaussianNoise`][ondabatches.transforms.GaussianNoise],
  [`Mixup`][ondabatches.transforms.Mixup];
- [`EventTargets`][ondabatches.transforms.EventTargets]: sparse event label sets as
  targets ([`EventMask`][ondabatches.transforms.EventMask],
  [`MultiHot`][ondabatches.transforms.MultiHot],
  [`EventList`][ondabatches.transforms.EventList], or one's own
  [`Target`][ondabatches.transforms.Target] registered with
  [`register_target`][ondabatches.transforms.register_target] and rebuilt by
  [`target_from_dict`][ondabatches.transforms.target_from_dict],
  [`registered_targets`][ondabatches.transforms.registered_targets]), ``y`` a dict of
  label sets.
"""

from . import (
    _augment,
    _base,
    _builtins,
    _derive,
    _draws,
    _folds,
    _scheme,
    _stats,
    _target,
    _targets,
    _transform,
)
from ._augment import *  # noqa: F403
from ._base import *  # noqa: F403
from ._builtins import *  # noqa: F403
from ._derive import *  # noqa: F403
from ._draws import *  # noqa: F403
from ._folds import *  # noqa: F403
from ._scheme import *  # noqa: F403
from ._stats import *  # noqa: F403
from ._target import *  # noqa: F403
from ._targets import *  # noqa: F403
from ._transform import *  # noqa: F403

__all__ = sorted(
    {
        *_augment.__all__,
        *_base.__all__,
        *_builtins.__all__,
        *_derive.__all__,
        *_draws.__all__,
        *_folds.__all__,
        *_scheme.__all__,
        *_stats.__all__,
        *_target.__all__,
        *_targets.__all__,
        *_transform.__all__,
    }
)
