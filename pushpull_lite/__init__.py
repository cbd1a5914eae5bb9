"""pushpull_lite: the small, tested package behind the pushpull-book chapters.

Layout, bottom to top: a module imports only modules listed before it (``tests/test_package_layout.py``
checks this order against the imports).

Foundations
    ``config`` (profiles, device, seeds, paths), ``checks`` (the argument checks every module uses,
    ``checks.fn(name, value, ...)``), ``cachefiles`` (locks, atomic writes, hash-checked downloads),
    ``stats`` (standard errors, comparisons and the verdicts chapters print).
Data
    ``data`` (CIFAR-10, batches), ``corruptions`` (the 19 CIFAR-10-C corruptions, each registered once
    in ``corruptions.REGISTRY``), ``cifar10c`` (the released arrays, or generated ones).
Biology and layers
    ``filters`` (Gabor fields, the V1 push-pull model), ``layers`` (the push-pull layers).
Models
    ``models`` (ResNets, the seed CNN, first layers by name), ``defenses`` (input transformations in
    front of a classifier), ``pretrained`` (the 2020 paper's checkpoints).
Measurement
    ``measure`` (the bottom of every number: ``correct(model, x, y, attack=None)`` per image,
    ``accuracy``, ``predict``), ``metrics`` (mCE / rCE arithmetic), ``attacks`` (every attack,
    registered in ``attacks.ATTACKS`` with its threat model), ``autoattack`` (APGD-CE, APGD-T and
    Square from torchattacks, the cascade worst case of one threat model), ``adversarial`` (eps sweeps,
    the seed's units), ``certify`` (randomized smoothing), ``evaluation`` (sanity checks, the torchattacks
    cross-check, input-transform defenses), ``robustness`` (noise and CIFAR-10-C over several models).
Training
    ``train`` (the supervised loop with hooks, recipes, the model cache), ``advtrain`` (PGD training
    through ``train.fit``'s hook), ``feedback`` (CNN-F and its loop), ``amsdn`` (AMSDN and its stages).
The book's models and results
    ``zoo`` (THE registry: one entry per model of the book, by key), ``plan`` (what a chapter will
    train, and how long), ``results`` (results files keyed by registry key), ``experiments`` (the
    standard protocol over the registry, and the reference-results runner).
Figures
    ``plotting``, ``explore`` (figures and the sliders of chapters 1-4).

Fractions in [0, 1] inside the package; per cent only at the edges (tables, results files).
CONTRIBUTING.md says where a new layer, corruption, attack, model or chapter goes.
"""

__version__ = "0.1.0"
