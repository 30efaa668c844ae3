"""Featurization on the data path: transforms applied where the windows are read.

- :class:`Transform`, :func:`register_transform`: the interface and the registry of
  transforms (a custom one registers by name, like formats and selectors);
- :class:`Pipeline`: an ordered list of them, JSON in a state's config;
- :class:`TransformedBatches`: a batch scheme whose batches carry the pipeline and the
  key their random transforms draw from (``Batcher(..., transforms=...)`` uses it);
- built-ins: zero-phase filters (:class:`Bandpass`, :class:`Highpass`,
  :class:`Lowpass`, :class:`Notch`), :class:`Normalize`, :class:`Spectrogram`, and the
  augmentations :class:`AmplitudeScale`, :class:`SignFlip`, :class:`TimeReverse`,
  :class:`ChannelDropout`, :class:`GaussianNoise`, :class:`Mixup`;
- :class:`EventTargets`: sparse event label sets as targets (:class:`EventMask`,
  :class:`MultiHot`, :class:`EventList`), ``y`` a dict of label sets.
"""

from . import _base, _builtins, _derive, _scheme, _stats, _targets
from ._base import *  # noqa: F403
from ._builtins import *  # noqa: F403
from ._derive import *  # noqa: F403
from ._scheme import *  # noqa: F403
from ._stats import *  # noqa: F403
from ._targets import *  # noqa: F403

__all__ = sorted(
    {
        *_base.__all__,
        *_builtins.__all__,
        *_derive.__all__,
        *_scheme.__all__,
        *_stats.__all__,
        *_targets.__all__,
    }
)
