"""The lattice model: indexing, neighbours, the obstacle hash, specs, and every bad-input case."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from naive import endpoints, lattices, naive_neighbours

from catalytic.errors import (
    BlockedVertexError,
    CoordinateError,
    InvalidInputError,
    InvalidTypeError,
    MaskError,
    ObstacleError,
    ShapeError,
    SpecError,
    VertexBudgetError,
    WeightsError,
)
from catalytic.lattice import MAX_AXES, Lattice, array_digest, random_blocked, splitmix64

MASK64 = (1 << 64) - 1


def splitmix64_python(seed: int, index: int) -> int:
    """The formula of the lattice module docstring, transcribed with Python integers."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def assert_names(error: BaseException, field: str) -> None:
    """The error is one of ours, names ``field`` first and states the allowed range."""
    assert isinstance(error, InvalidInputError | InvalidTypeError)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert error.allowed
    assert f"(allowed: {error.allowed})" in str(error)


# --- indexing and neighbours --------------------------------------------------------------------------------


@given(data=st.data())
def test_index_and_coords_round_trip_in_c_order(data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    index = np.arange(lattice.vertices)
    coords = lattice.coords_of(index)
    assert coords.shape == (lattice.vertices, lattice.ndim)
    np.testing.assert_array_equal(coords, np.stack(np.unravel_index(index, lattice.shape), axis=-1))
    np.testing.assert_array_equal(lattice.index_of(coords), index)
    expected_strides = [int(np.prod(lattice.shape[k + 1 :])) for k in range(lattice.ndim)]
    assert list(lattice.strides) == expected_strides


def test_last_axis_is_fastest() -> None:
    lattice = Lattice((2, 3, 4))
    assert int(lattice.index_of([1, 2, 3])) == 23
    assert int(lattice.index_of([0, 0, 1])) == 1
    assert lattice.coords_of(5).tolist() == [0, 1, 1]


@given(data=st.data())
def test_neighbours_match_coordinate_arithmetic(data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    vertex = data.draw(st.integers(0, lattice.vertices - 1))
    expected: list[int] = []
    for j in naive_neighbours(lattice, vertex):
        if j != vertex and j not in expected:
            expected.append(j)
    assert lattice.neighbours(vertex) == expected


@pytest.mark.parametrize(
    ("shape", "periodic", "vertex", "expected"),
    [
        ((3, 3), False, 4, [1, 7, 3, 5]),
        ((3, 3), False, 0, [3, 1]),
        ((3, 3), True, 0, [6, 3, 2, 1]),
        ((3, 4), [False, True], 4, [0, 8, 7, 5]),
        ((2, 3), True, 1, [4, 0, 2]),
        ((1, 5), True, 2, [1, 3]),
        ((1,), True, 0, []),
    ],
)
def test_neighbours_wrap_only_on_periodic_axes(
    shape: tuple[int, ...], periodic: bool | list[bool], vertex: int, expected: list[int]
) -> None:
    assert Lattice(shape, periodic=periodic).neighbours(vertex) == expected


# --- obstacles ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 42, 2**63 + 5, 2**64 - 1])
def test_splitmix64_follows_the_documented_formula(seed: int) -> None:
    index = np.array([0, 1, 2, 1000, 2**31 + 7, 2**40 + 3], dtype=np.uint64)
    expected = [splitmix64_python(seed, int(i)) for i in index]
    assert splitmix64(seed, index).tolist() == expected


def test_splitmix64_first_output_of_seed_zero() -> None:
    # The well-known first output of SplitMix64 seeded with 0.
    assert splitmix64(0, np.array([0], dtype=np.uint64)).tolist() == [0xE220A8397B1DCDAF]


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_random_obstacles_block_by_the_53_bit_threshold(p: float) -> None:
    seed = 12345
    lattice = Lattice((7, 9), obstacles=[{"kind": "random", "p": p, "seed": seed}])
    threshold = int(p * 2**53)
    expected = [not (splitmix64_python(seed, i) >> 11 < threshold) for i in range(63)]
    assert lattice.open_mask_flat().tolist() == expected
    np.testing.assert_array_equal(random_blocked(seed, p, 10, 20), ~lattice.open_mask_flat()[10:20])
    if p == 0.0:
        assert lattice.open_vertices == 63
    if p == 1.0:
        assert lattice.open_vertices == 0


def test_boxes_are_inclusive_and_combine_with_the_mask() -> None:
    blocked = np.zeros((4, 5), dtype=bool)
    blocked[3, 4] = True
    lattice = Lattice((4, 5), blocked=blocked, obstacles=[{"kind": "box", "lo": [1, 1], "hi": [2, 3]}])
    expected = np.ones((4, 5), dtype=bool)
    expected[1:3, 1:4] = False
    expected[3, 4] = False
    np.testing.assert_array_equal(lattice.open_mask(), expected)
    assert lattice.open_vertices == 13
    assert not lattice.open_mask_flat().flags.writeable


# --- specs --------------------------------------------------------------------------------------------------


def _rich_lattice() -> Lattice:
    rng = np.random.default_rng(3)
    return Lattice(
        (5, 6, 2),
        periodic=[True, False, True],
        blocked=rng.random((5, 6, 2)) < 0.2,
        weights=rng.uniform(0.5, 3.0, (5, 6, 2)),
        obstacles=[{"kind": "random", "p": 0.15, "seed": 99}, {"kind": "box", "lo": [0, 0, 0], "hi": [1, 2, 0]}],
    )


@given(data=st.data())
def test_spec_round_trips_through_json(data: st.DataObject) -> None:
    lattice = data.draw(lattices())
    spec = json.loads(json.dumps(lattice.spec()))
    rebuilt = Lattice.from_spec(spec, blocked=lattice.blocked, weights=lattice.weights)
    assert rebuilt == lattice
    assert rebuilt.digest() == lattice.digest()
    np.testing.assert_array_equal(rebuilt.open_mask_flat(), lattice.open_mask_flat())


def test_spec_carries_digests_of_explicit_arrays() -> None:
    lattice = _rich_lattice()
    spec = lattice.spec()
    assert spec["blocked"] == {"digest": array_digest(lattice.blocked)}
    assert spec["weights"] == {"digest": array_digest(lattice.weights)}
    assert spec["blocked"]["digest"].startswith("xxh3_128:")
    rebuilt = Lattice.from_spec(spec, blocked=lattice.blocked.copy(), weights=lattice.weights.copy())
    assert rebuilt == lattice


@pytest.mark.parametrize("name", ["blocked", "weights"])
def test_spec_refuses_a_mismatching_array(name: str) -> None:
    lattice = _rich_lattice()
    arrays = {"blocked": lattice.blocked.copy(), "weights": lattice.weights.copy()}
    if name == "blocked":
        arrays["blocked"][0, 0, 0] = not arrays["blocked"][0, 0, 0]
    else:
        arrays["weights"][0, 0, 0] += 1.0
    with pytest.raises(SpecError) as caught:
        Lattice.from_spec(lattice.spec(), **arrays)
    assert_names(caught.value, name)


@pytest.mark.parametrize("name", ["blocked", "weights"])
def test_spec_refuses_a_missing_array(name: str) -> None:
    lattice = _rich_lattice()
    arrays = {"blocked": lattice.blocked, "weights": lattice.weights, name: None}
    with pytest.raises(SpecError) as caught:
        Lattice.from_spec(lattice.spec(), **arrays)
    assert_names(caught.value, name)


def test_spec_refuses_an_unexpected_array() -> None:
    with pytest.raises(SpecError) as caught:
        Lattice.from_spec(Lattice((2, 2)).spec(), weights=np.ones((2, 2)))
    assert_names(caught.value, "weights")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"shape": [2], "colour": "red"}, "spec"),
        ({"shape": [2], "version": 99}, "spec.version"),
        ({"periodic": True}, "spec.shape"),
        ({"shape": [2], "weights": "abc"}, "spec.weights"),
    ],
)
def test_spec_refuses_malformed_specs(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        Lattice.from_spec(spec)
    assert_names(caught.value, field)


def test_spec_must_be_an_object() -> None:
    with pytest.raises(InvalidTypeError) as caught:
        Lattice.from_spec([2, 2])  # type: ignore[arg-type]
    assert_names(caught.value, "spec")


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "error", "field"),
    [
        ((3, 0), ShapeError, "shape[1]"),
        ((-2,), ShapeError, "shape[0]"),
        (0, ShapeError, "shape[0]"),
        ((3, 2.5), InvalidTypeError, "shape[1]"),
        ((3.0,), InvalidTypeError, "shape[0]"),
        ((True, 2), InvalidTypeError, "shape[0]"),
        (("3", 2), InvalidTypeError, "shape[0]"),
        ("33", InvalidTypeError, "shape"),
        (None, InvalidTypeError, "shape"),
        ((), ShapeError, "shape"),
        ((2,) * (MAX_AXES + 1), ShapeError, "shape"),
    ],
)
def test_bad_shapes(shape: Any, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as caught:
        Lattice(shape)
    assert_names(caught.value, field)


def test_ten_axes_are_allowed() -> None:
    assert Lattice((1,) * MAX_AXES).ndim == MAX_AXES


@pytest.mark.parametrize(
    ("periodic", "error", "field"),
    [
        ([True], ShapeError, "periodic"),
        ([True, False, True], ShapeError, "periodic"),
        ([True, 1], InvalidTypeError, "periodic[1]"),
        ("yes", InvalidTypeError, "periodic"),
        (1, InvalidTypeError, "periodic"),
    ],
)
def test_bad_periodic_flags(periodic: Any, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as caught:
        Lattice((3, 3), periodic=periodic)
    assert_names(caught.value, field)


@pytest.mark.parametrize(
    ("coords", "error"),
    [
        ([3, 0], CoordinateError),
        ([0, -1], CoordinateError),
        ([0, 4], CoordinateError),
        ([1], CoordinateError),
        ([1, 2, 0], CoordinateError),
        (5, CoordinateError),
        ([1.0, 2.0], InvalidTypeError),
        ([True, False], InvalidTypeError),
        (["a", "b"], InvalidTypeError),
        ([[1, 2], [3]], InvalidTypeError),
    ],
)
def test_bad_coordinates(coords: Any, error: type[Exception]) -> None:
    lattice = Lattice((3, 4))
    for call in (lattice.index_of, lattice.check_vertex):
        with pytest.raises(error) as caught:
            call(coords, "start")
        assert_names(caught.value, "start")


def test_coords_of_refuses_an_index_out_of_range() -> None:
    lattice = Lattice((3, 4))
    for index in (-1, 12):
        with pytest.raises(CoordinateError) as caught:
            lattice.coords_of(index)
        assert_names(caught.value, "index")


@given(data=st.data())
def test_check_vertex_accepts_open_vertices(data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    coords = data.draw(endpoints(lattice, as_coords=True))
    expected = int(np.ravel_multi_index(coords, lattice.shape))
    # Python ints (a JSON body) take the array-free path; a NumPy array takes the vectorised one.
    assert lattice.check_vertex([int(c) for c in coords], "goal") == expected
    assert lattice.check_vertex(np.asarray(coords, dtype=np.int64), "goal") == expected


@pytest.mark.parametrize("field", ["start", "goal"])
def test_blocked_start_or_goal(field: str) -> None:
    lattice = Lattice((3, 3), obstacles=[{"kind": "box", "lo": [1, 1], "hi": [1, 1]}])
    with pytest.raises(BlockedVertexError) as caught:
        lattice.check_vertex([1, 1], field)
    assert_names(caught.value, field)
    assert "[1, 1]" in str(caught.value)


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        (np.array([[1.0, np.nan], [1.0, 1.0]]), WeightsError),
        (np.array([[1.0, 0.0], [1.0, 1.0]]), WeightsError),
        (np.array([[1.0, -2.0], [1.0, 1.0]]), WeightsError),
        (np.array([[1.0, np.inf], [1.0, 1.0]]), WeightsError),
        (np.array([[1.0, -np.inf], [1.0, 1.0]]), WeightsError),
        (np.ones((2, 3)), WeightsError),
        (np.ones(4), WeightsError),
        (np.ones((2, 2), dtype=bool), WeightsError),
        (np.ones((2, 2), dtype=complex), WeightsError),
        (np.array([["a", "b"], ["c", "d"]]), WeightsError),
        ([[1.0, 1.0], [1.0, 1.0]], InvalidTypeError),
    ],
)
def test_bad_weights(weights: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        Lattice((2, 2), weights=weights)
    assert_names(caught.value, "weights")


def test_integer_weights_are_accepted_as_float64() -> None:
    lattice = Lattice((2, 2), weights=np.array([[1, 2], [3, 4]]))
    assert lattice.weights is not None
    assert lattice.weights.dtype == np.float64
    assert lattice.min_weight == 1.0


@pytest.mark.parametrize(
    ("blocked", "error"),
    [
        (np.zeros((3, 2), dtype=bool), MaskError),
        (np.zeros(6, dtype=bool), MaskError),
        (np.zeros((2, 3), dtype=np.uint8), MaskError),
        (np.zeros((2, 3)), MaskError),
        ([[False] * 3] * 2, InvalidTypeError),
    ],
)
def test_bad_masks(blocked: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        Lattice((2, 3), blocked=blocked)
    assert_names(caught.value, "blocked")


@pytest.mark.parametrize(
    ("obstacle", "error", "field"),
    [
        ({"kind": "random", "p": -0.01, "seed": 1}, ObstacleError, "obstacles[0].p"),
        ({"kind": "random", "p": 1.5, "seed": 1}, ObstacleError, "obstacles[0].p"),
        ({"kind": "random", "p": float("nan"), "seed": 1}, ObstacleError, "obstacles[0].p"),
        ({"kind": "random", "p": float("inf"), "seed": 1}, ObstacleError, "obstacles[0].p"),
        ({"kind": "random", "p": "0.5", "seed": 1}, InvalidTypeError, "obstacles[0].p"),
        ({"kind": "random", "p": 0.5, "seed": -1}, ObstacleError, "obstacles[0].seed"),
        ({"kind": "random", "p": 0.5, "seed": 2**64}, ObstacleError, "obstacles[0].seed"),
        ({"kind": "random", "p": 0.5, "seed": 1.5}, InvalidTypeError, "obstacles[0].seed"),
        ({"kind": "random", "p": 0.5, "density": 1}, ObstacleError, "obstacles[0]"),
        ({"kind": "box", "lo": [0, 0], "hi": [3, 1]}, ObstacleError, "obstacles[0].hi[0]"),
        ({"kind": "box", "lo": [-1, 0], "hi": [1, 1]}, ObstacleError, "obstacles[0].lo[0]"),
        ({"kind": "box", "lo": [0, 0], "hi": [1, 4]}, ObstacleError, "obstacles[0].hi[1]"),
        ({"kind": "box", "lo": [2, 0], "hi": [1, 1]}, ObstacleError, "obstacles[0].lo[0]"),
        ({"kind": "box", "lo": [0], "hi": [1, 1]}, ObstacleError, "obstacles[0].lo"),
        ({"kind": "box", "lo": [0, 0], "hi": 1}, InvalidTypeError, "obstacles[0].hi"),
        ({"kind": "box", "lo": [0, 0.5], "hi": [1, 1]}, InvalidTypeError, "obstacles[0].lo[1]"),
        ({"kind": "wall"}, ObstacleError, "obstacles[0].kind"),
        ("box", InvalidTypeError, "obstacles[0]"),
    ],
)
def test_bad_obstacles(obstacle: Any, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as caught:
        Lattice((3, 4), obstacles=[obstacle])
    assert_names(caught.value, field)


def test_obstacles_must_be_a_list() -> None:
    with pytest.raises(InvalidTypeError) as caught:
        Lattice((3, 4), obstacles={"kind": "box", "lo": [0, 0], "hi": [0, 0]})  # type: ignore[arg-type]
    assert_names(caught.value, "obstacles")


def test_vertex_budget() -> None:
    with pytest.raises(VertexBudgetError) as caught:
        Lattice((4, 4), max_vertices=15)
    assert_names(caught.value, "shape")
    assert "15" in str(caught.value)
    assert Lattice((4, 4), max_vertices=16).vertices == 16


def test_vertex_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALYTIC_MAX_VERTICES", "100")
    with pytest.raises(VertexBudgetError) as caught:
        Lattice((10, 11))
    assert_names(caught.value, "shape")
    assert Lattice((10, 10)).vertices == 100


@pytest.mark.parametrize("raw", ["many", "0"])
def test_bad_vertex_budget_in_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CATALYTIC_MAX_VERTICES", raw)
    with pytest.raises(ShapeError) as caught:
        Lattice((2, 2))
    assert_names(caught.value, "CATALYTIC_MAX_VERTICES")


def test_huge_shapes_hit_the_budget_before_any_allocation() -> None:
    with pytest.raises(VertexBudgetError):
        Lattice((2**40, 2**40))


def test_errors_serialise_for_the_http_layer() -> None:
    with pytest.raises(ShapeError) as caught:
        Lattice((0,))
    body = caught.value.to_dict()
    assert body["field"] == "shape[0]"
    assert body["allowed"] == "1 to 10 axes, each an integer >= 1"
    assert isinstance(caught.value, ValueError)


def test_model_edge_cases_raise_field_named_errors() -> None:
    from catalytic.errors import CoordinateError, InvalidTypeError, ShapeError, WeightsError

    lat = Lattice((3, 3))
    with pytest.raises(CoordinateError, match=r"^start"):
        lat.check_vertex([[0, 0], [1, 1]], "start")
    with pytest.raises(InvalidTypeError, match=r"^index"):
        lat.coords_of(1.5)
    with pytest.raises(InvalidTypeError, match=r"^index"):
        lat.coords_of(True)
    with pytest.raises(InvalidTypeError, match=r"^max_vertices"):
        Lattice((3, 3), max_vertices="x")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"^max_vertices"):
        Lattice((3, 3), max_vertices=-1)
    with pytest.raises(WeightsError, match=r"^weights"):
        Lattice((1, 4), weights=np.full((1, 4), 1e308))
    with pytest.raises(WeightsError, match=r"^weights"):
        Lattice((2, 2), weights=np.array([[1.0, 1e-300], [1.0, 1.0]]))
    assert Lattice((2, 2), weights=np.array([[1.0, 1e6], [1.0, 1.0]])).weighted
