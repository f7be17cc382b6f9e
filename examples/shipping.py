"""Shipping costs, to see what coverage.py's line-level branches miss:

    python -m lowimpact cover run --branch examples/shipping.py
    python -m lowimpact cover report -m      # 100% of lines and branches...
    python -m lowimpact cover subline        # ...but `weight < 20` was never false
"""


def cost(weight, express):
    base = 5 if weight < 2 else 9
    if express and weight < 20:
        return base * 2
    return base


print(cost(1, express=False), cost(3, express=True))
