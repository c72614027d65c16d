"""A candle chart as plain SVG shapes: no script library, works offline."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from trading.selectors import Candle


@dataclass(frozen=True)
class CandleShape:
    x: float  # centre
    body_left: float
    wick_top: float
    wick_bottom: float
    body_top: float
    body_height: float
    rising: bool
    candle: Candle


@dataclass(frozen=True)
class CandleChart:
    width: int
    height: int
    candle_width: float
    shapes: list[CandleShape]
    high: Decimal | None
    low: Decimal | None


def candle_chart(
    candles: list[Candle], *, width: int = 720, height: int = 240, slots: int = 60
) -> CandleChart:
    """Lay out candles left to right, the newest at the right edge, prices
    scaled to the chart's height; at least ``slots`` candle widths wide."""
    if not candles:
        return CandleChart(width, height, 0, [], None, None)
    high = max(candle.high for candle in candles)
    low = min(candle.low for candle in candles)
    span = (high - low) or high or Decimal(1)
    pad = 8
    usable = height - 2 * pad
    slot = width / max(len(candles), slots)
    first = width - slot * len(candles)  # right-aligned: the newest is at the edge

    def y(price: Decimal) -> float:
        return round(pad + float((high - price) / span) * usable, 2)

    candle_width = round(max(slot * 0.6, 1.0), 2)
    shapes = []
    for index, candle in enumerate(candles):
        top, bottom = (
            y(max(candle.open, candle.close)),
            y(min(candle.open, candle.close)),
        )
        shapes.append(
            CandleShape(
                x=round(first + slot * index + slot / 2, 2),
                body_left=round(first + slot * index + (slot - candle_width) / 2, 2),
                wick_top=y(candle.high),
                wick_bottom=y(candle.low),
                body_top=top,
                body_height=max(bottom - top, 1.0),
                rising=candle.close >= candle.open,
                candle=candle,
            )
        )
    return CandleChart(width, height, candle_width, shapes, high, low)
