import pytest

from profilespawner.sizes import SizeError, format_size, parse_size


@pytest.mark.parametrize("text,expected", [
    ("512M", 512 * 1024**2), ("4G", 4 * 1024**3), ("1.5G", 1536 * 1024**2), ("1T", 1024**4),
    ("4g", 4 * 1024**3), ("100K", 102400), (1073741824, 1024**3), ("1073741824", 1024**3),
    (" 2G ", 2 * 1024**3), (0, 0), (2048.0, 2048),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["4X", "G", "", "-1G", "1.5.5G", "nan", "inf", None, True, -5, 1.5, float("nan"), [1]])
def test_parse_size_rejects_with_value_and_allowed(bad):
    with pytest.raises(SizeError) as err:
        parse_size(bad)
    assert repr(bad) in str(err.value)
    assert "512M" in str(err.value) or "bytes" in str(err.value)


@pytest.mark.parametrize("nbytes,text", [
    (4 * 1024**3, "4G"), (1536 * 1024**2, "1.5G"), (512 * 1024**2, "512M"), (1024**4, "1T"), (1000, "1000"),
])
def test_format_size(nbytes, text):
    assert format_size(nbytes) == text
    assert parse_size(format_size(nbytes)) == nbytes


def test_sizes_for_people_use_the_parsers_powers_of_1024():
    from profilespawner.sizes import counted, format_binary, format_gib
    assert format_binary(parse_size("21.19G")) == "21.19 GiB"
    assert format_binary(parse_size("512M")) == "512 MiB" and format_binary(3) == "3 B"
    assert format_gib(parse_size("512M")) == "0.5 GiB" and format_gib(parse_size("2G")) == "2 GiB"
    assert (counted(1, "CPU"), counted(2, "CPU"), counted(0.5, "CPU")) == ("1 CPU", "2 CPUs", "0.5 CPUs")
