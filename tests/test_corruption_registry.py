"""The corruption registry: each corruption declared once, every public table derived from it.

What every registered corruption must do when applied (shape, dtype, range, determinism, severity order)
is tested in test_corruptions.py, parametrised over ``corruptions.REGISTRY``.
"""

from __future__ import annotations

import hashlib

import pytest

from pushpull_lite import corruptions
from pushpull_lite.corruptions import (
    CORRUPTIONS,
    FAMILIES,
    FAMILY_NAMES,
    PARAMETERS,
    REGISTRY,
    SEVERITIES,
    STANDARD_CORRUPTIONS,
    Corruption,
)

#: sha256 of ``repr(PARAMETERS)``, taken before the tables became one registry: every value (int or float,
#: to the last bit: repr round-trips floats) of the CIFAR-10 ``make_cifar_c.py`` parameters is unchanged.
PARAMETERS_SHA256 = "bfba402b3b7aa94054a41f9989e9e6e6c8716a68870910d86777deeaa9eafa1f"


def test_parameters_are_bit_identical_to_the_published_ones():
    assert hashlib.sha256(repr(PARAMETERS).encode()).hexdigest() == PARAMETERS_SHA256


@pytest.mark.parametrize("name", REGISTRY)
def test_each_registration_is_complete(name):
    entry = REGISTRY[name]
    assert isinstance(entry, Corruption) and entry.name == name
    assert entry.family in FAMILY_NAMES
    assert isinstance(entry.severities, tuple) and len(entry.severities) == len(SEVERITIES)
    assert callable(entry.function) and entry.parameters.strip()


def test_public_tables_are_derived_from_the_registry():
    assert set(CORRUPTIONS) == set(REGISTRY) and len(CORRUPTIONS) == len(REGISTRY)
    assert list(FAMILIES) == list(FAMILY_NAMES)
    assert CORRUPTIONS == tuple(c for names in FAMILIES.values() for c in names)  # grouped by family
    for family, names in FAMILIES.items():
        assert all(REGISTRY[c].family == family for c in names)
    assert STANDARD_CORRUPTIONS == tuple(c for c in CORRUPTIONS if not REGISTRY[c].extra)
    assert all(PARAMETERS[c] is REGISTRY[c].severities for c in CORRUPTIONS)
    assert list(PARAMETERS) == list(CORRUPTIONS)
    # the 4 held-out extras, one per family (ImageNet-C paper)
    extras = {c: REGISTRY[c].family for c in CORRUPTIONS if REGISTRY[c].extra}
    assert extras == {
        "speckle_noise": "noise",
        "gaussian_blur": "blur",
        "spatter": "weather",
        "saturate": "digital",
    }


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        REGISTRY["rain"] = REGISTRY["fog"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        REGISTRY["fog"].severities = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    "name, family, severities, message",
    [
        ("fog", "weather", (1, 2, 3, 4, 5), "new lower_case identifier"),  # already registered
        ("Rain", "weather", (1, 2, 3, 4, 5), "new lower_case identifier"),
        ("rain drops", "weather", (1, 2, 3, 4, 5), "new lower_case identifier"),
        ("rain", "water", (1, 2, 3, 4, 5), "family must be one of"),
        ("rain", "weather", (1, 2, 3, 4), "tuple of 5 parameter sets"),
        ("rain", "weather", [1, 2, 3, 4, 5], "tuple of 5 parameter sets"),
    ],
)
def test_a_bad_registration_is_refused(name, family, severities, message):
    before = dict(REGISTRY)
    decorate = corruptions._register(name, family=family, parameters="x", severities=severities)
    with pytest.raises(ValueError, match=message):
        decorate(lambda x, params, gen, is_uint8: x)
    assert dict(REGISTRY) == before
