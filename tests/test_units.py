"""Resource quantities: parse_bytes / parse_cpu / parse_count / format_bytes / format_cpu."""

from __future__ import annotations

import math

import pytest

from hub_ext.admission.units import (
    QuantityError,
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_count,
    parse_cpu,
)

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, 0),
        (2048, 2048),
        (1.9, 1),  # fractional bytes are truncated
        ("0", 0),
        ("512", 512),
        ("512M", 512 * M),
        ("512m", 512 * M),
        ("2G", 2 * G),
        ("2g", 2 * G),
        ("1.5G", int(1.5 * G)),
        ("1.5Gi", int(1.5 * G)),
        ("4Gi", 4 * G),
        ("4GiB", 4 * G),
        ("4GB", 4 * G),
        ("64Ki", 64 * K),
        ("1T", T),
        ("1Ti", T),
        (2**63 - 1, 2**63 - 1),
        ("  8M  ", 8 * M),
        ("8 M", 8 * M),
    ],
)
def test_parse_bytes(value, expected):
    assert parse_bytes(value) == expected
    assert isinstance(parse_bytes(value), int)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        -1,
        -0.5,
        math.nan,
        math.inf,
        -math.inf,
        "abc",
        "",
        "   ",
        "-1G",
        "1e9",
        "4X",
        "4 G G",
        "G",
        "1,5G",
        None,
        [1],
        {"G": 1},
        b"4G",
        pytest.param("9" * 400 + "G", id="400-digit-G"),  # a float overflow, not OverflowError
        pytest.param(10**400, id="10**400"),
        pytest.param("8E", id="exa-suffix"),
        pytest.param(2**63, id="2**63"),  # beyond int64: Kubernetes, cgroups and rlimits
    ],
)
def test_parse_bytes_refuses(value):
    with pytest.raises(QuantityError):
        parse_bytes(value)


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, 0.0),
        (2, 2.0),
        (0.5, 0.5),
        ("1.5", 1.5),
        (" 3 ", 3.0),
        ("500m", 0.5),
        ("1500m", 1.5),
        ("0m", 0.0),
        ("8", 8.0),
    ],
)
def test_parse_cpu(value, expected):
    result = parse_cpu(value)
    assert result == pytest.approx(expected)
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        -1,
        -0.1,
        "-1",
        "-500m",
        math.nan,
        math.inf,
        "nan",
        "inf",
        "abc",
        "",
        "m",
        "1.5x",
        None,
        [2],
        {"cpu": 2},
        pytest.param(10**400, id="10**400"),  # too large for a float: not OverflowError
    ],
)
def test_parse_cpu_refuses(value):
    with pytest.raises(QuantityError):
        parse_cpu(value)


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, 0),
        (4, 4),
        (4.0, 4),
        ("4", 4),
        (" 12 ", 12),
    ],
)
def test_parse_count(value, expected):
    result = parse_count(value)
    assert result == expected
    assert isinstance(result, int) and not isinstance(result, bool)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        -1,
        -1.0,
        1.5,
        math.nan,
        math.inf,
        "1.5",
        "-1",
        "abc",
        "",
        "²",  # str.isdigit() says yes, int() says no: still a QuantityError
        None,
        [1],
    ],
)
def test_parse_count_refuses(value):
    with pytest.raises(QuantityError):
        parse_count(value)


def test_quantity_error_is_a_value_error():
    assert issubclass(QuantityError, ValueError)


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, "0"),
        (1, "1"),
        (1023, "1023"),
        (K, "1K"),
        (1536, "1.5K"),
        (512 * M, "512M"),
        (G, "1G"),
        (2 * G, "2G"),
        (int(1.5 * G), "1.5G"),
        (int(1.25 * G), "1.25G"),
        (4 * G - 1, "4G"),  # rounded to two decimals
        (64 * G, "64G"),
        (T, "1T"),
        (2048 * T, "2048T"),
    ],
)
def test_format_bytes(n, expected):
    assert format_bytes(n) == expected


@pytest.mark.parametrize(
    "text", ["0", "1", "512M", "2G", "1.5G", "64G", "200G", "1T", "1.25T", "3K"]
)
def test_format_bytes_round_trips(text):
    assert format_bytes(parse_bytes(text)) == text


@pytest.mark.parametrize(
    "n, expected",
    [(0, "0"), (1, "1"), (2.0, "2"), (0.5, "0.5"), (1.25, "1.25"), (0.1, "0.1"), (32, "32")],
)
def test_format_cpu(n, expected):
    assert format_cpu(n) == expected
