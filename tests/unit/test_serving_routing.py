"""Canary routing: a hash-sticky share of callers, random per request without a key."""

from __future__ import annotations

import math
import random

import pytest

from mlops.serving.metrics import ROUTE_CANARY, ROUTE_CHAMPION
from mlops.serving.routing import Router, sticky_point


def test_sticky_point_is_stable_and_uniformish():
    assert sticky_point("customer-42") == sticky_point("customer-42")
    points = [sticky_point(f"k{i}") for i in range(2000)]
    assert all(0.0 <= p < 1.0 for p in points)
    assert abs(sum(points) / len(points) - 0.5) < 0.03


@pytest.mark.parametrize("share", [0.05, 0.3, 0.5, 0.9])
def test_share_of_keys_within_four_sigma(share):
    router = Router("canary", share)
    n = 5000
    hits = sum(router.choose(f"user-{i}", canary_available=True) == ROUTE_CANARY for i in range(n))
    assert abs(hits - n * share) <= 4 * math.sqrt(n * share * (1 - share))


def test_same_key_always_gets_the_same_route():
    router = Router("canary", 0.5, rng=random.Random(0))
    for i in range(200):
        key = f"caller-{i}"
        routes = {router.choose(key, canary_available=True) for _ in range(5)}
        assert len(routes) == 1


def test_without_key_the_route_is_random_per_request():
    router = Router("canary", 0.3, rng=random.Random(1))
    routes = [router.choose(None, canary_available=True) for _ in range(4000)]
    hits = routes.count(ROUTE_CANARY)
    assert abs(hits - 1200) <= 4 * math.sqrt(4000 * 0.3 * 0.7)
    assert router.choose("", canary_available=True) in (ROUTE_CANARY, ROUTE_CHAMPION)


@pytest.mark.parametrize(
    ("mode", "share", "available"),
    [("champion", 0.5, True), ("shadow", 0.5, True), ("canary", 0.0, True), ("canary", 1.0, False)],
)
def test_champion_answers_when_no_canary_applies(mode, share, available):
    router = Router(mode, share)
    assert {router.choose(f"k{i}", canary_available=available) for i in range(100)} == {ROUTE_CHAMPION}


def test_full_share_sends_everyone_to_the_canary():
    router = Router("canary", 1.0)
    assert {router.choose(f"k{i}", canary_available=True) for i in range(100)} == {ROUTE_CANARY}


def test_only_shadow_mode_shadows():
    assert Router("shadow", 0.1).shadows
    assert not Router("canary", 0.1).shadows and not Router("champion", 0.1).shadows
