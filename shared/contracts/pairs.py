"""Trading pairs as the app may write them ('BTC/USDT', 'btc-usdt') and as HTX names them ('btcusdt')."""

import re
from collections.abc import Iterable

_PAIR_SEPARATORS = re.compile(r"[\s/_\-:]+")


def normalise_pairs(pairs: Iterable[str]) -> list[str]:
    """HTX symbols for pairs: lower case, separators removed; order kept, duplicates and blanks gone."""
    seen: dict[str, None] = {}
    for pair in pairs:
        symbol = _PAIR_SEPARATORS.sub("", pair).lower()
        if symbol:
            seen.setdefault(symbol, None)
    return list(seen)
