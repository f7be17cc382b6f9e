from pkg.mod import label, sign


def test_sign():
    assert sign(3) == 1
    assert sign(0) == 0


def test_label():
    assert label(2) == "even"
