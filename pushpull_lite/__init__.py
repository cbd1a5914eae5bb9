"""pushpull_lite: the small, tested package behind the pushpull-book chapters.

Modules (one job each): ``config`` (profile, device, seeds, paths), ``data`` (CIFAR-10 and
CIFAR-10-C), ``layers`` (push-pull layers), ``filters`` (Gabor and V1 models), ``models``
(ResNets, the seed's CNN), ``train`` (fit, evaluate, model cache), ``attacks``, ``corruptions``,
``metrics``, ``plotting``.
"""

__version__ = "0.1.0"
