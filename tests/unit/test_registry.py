import pytest

from edgekd.errors import InputError
from edgekd.registry import Registry


def test_registry_suggests_close_names_and_rejects_duplicates():
    r: Registry[int] = Registry("thing")
    r.register("alpha")(1)
    assert r.get("alpha") == 1 and "alpha" in r and r.names() == ["alpha"]
    with pytest.raises(InputError, match="did you mean 'alpha'"):
        r.get("alpah")
    with pytest.raises(ValueError):
        r.register("alpha")(2)
