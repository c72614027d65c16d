"""A candle chart as plain SVG shapes, with a price and a time axis: what the
market page shows without script (with script, static/js/market.js draws the
interactive chart from the candles API instead)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from trading.money import EXACT
from trading.selectors import Candle

PRICE_AXIS_WIDTH = 72  # the labels right of the candles
TIME_AXIS_HEIGHT = 22  # the labels under them
PRICE_TICKS = 4  # about this many price lines
TIME_TICKS = 4  # at most this many time labels
TIME_LABEL_GAP = 120  # and this far apart at least


@dataclass(frozen=True)
class CandleShape:
    x: float  # centre
    body_left: float
    wick_top: float
    wick_bottom: float
    body_top: float
    body_height: float
    volume_top: float
    volume_height: float
    rising: bool
    candle: Candle


@dataclass(frozen=True)
class PriceTick:
    price: Decimal
    y: float


@dataclass(frozen=True)
class TimeTick:
    start: datetime
    x: float


@dataclass(frozen=True)
class CandleChart:
    width: int
    height: int
    plot_width: int  # the candles' part, left of the price axis
    plot_height: int  # above the time axis
    candle_width: float
    shapes: list[CandleShape]
    high: Decimal | None
    low: Decimal | None
    price_ticks: list[PriceTick]
    time_ticks: list[TimeTick]


def _nice_step(span: Decimal, count: int) -> Decimal:
    """The round step (1, 2 or 5 times a power of ten) that cuts ``span``
    into about ``count`` parts."""
    raw = span / count
    magnitude = Decimal(1).scaleb(raw.adjusted())
    for factor in (1, 2, 5):
        if magnitude * factor >= raw:
            return magnitude * factor
    return magnitude * 10


def candle_chart(
    candles: list[Candle], *, width: int = 720, height: int = 260, slots: int = 60
) -> CandleChart:
    """Lay out candles left to right, the newest at the right edge of the
    plot, prices scaled to its height with round price lines, volume as bars
    along its bottom; at least ``slots`` candle widths wide."""
    plot_width = width - PRICE_AXIS_WIDTH
    plot_height = height - TIME_AXIS_HEIGHT
    if not candles:
        return CandleChart(
            width, height, plot_width, plot_height, 0, [], None, None, [], []
        )
    high = max(candle.high for candle in candles)
    low = min(candle.low for candle in candles)
    top, bottom = high, low
    if top == bottom:  # one price: keep it mid-height
        margin = top / 100 or Decimal(1)
        top, bottom = top + margin, bottom - margin
    span = top - bottom
    pad = 10
    volume_height = plot_height * 0.2
    usable = plot_height - 2 * pad - volume_height
    slot = plot_width / max(len(candles), slots)
    first = plot_width - slot * len(candles)  # right-aligned: the newest last
    most_volume = max(candle.volume for candle in candles) or Decimal(1)

    def y(price: Decimal) -> float:
        return round(pad + float((top - price) / span) * usable, 2)

    candle_width = round(max(slot * 0.6, 1.0), 2)
    shapes = []
    for index, candle in enumerate(candles):
        bar = max(float(candle.volume / most_volume) * volume_height, 1.0)
        body_top, body_bottom = (
            y(max(candle.open, candle.close)),
            y(min(candle.open, candle.close)),
        )
        shapes.append(
            CandleShape(
                x=round(first + slot * index + slot / 2, 2),
                body_left=round(first + slot * index + (slot - candle_width) / 2, 2),
                wick_top=y(candle.high),
                wick_bottom=y(candle.low),
                body_top=body_top,
                body_height=max(body_bottom - body_top, 1.0),
                volume_top=round(plot_height - bar, 2),
                volume_height=round(bar, 2),
                rising=candle.close >= candle.open,
                candle=candle,
            )
        )
    step = _nice_step(span, PRICE_TICKS)
    # Exact: at 28 digits a price far larger than the step may not change when
    # the step is added. A quotient by 1, 2 or 5 times a power of ten is exact,
    # and the step cuts the span into at most PRICE_TICKS parts.
    with localcontext(EXACT):
        first = (bottom / step).to_integral_value(rounding=ROUND_CEILING)
        last = (top / step).to_integral_value(rounding=ROUND_FLOOR)
        prices = [(first + index) * step for index in range(int(last - first) + 1)]
    price_ticks = [PriceTick(price, y(price)) for price in prices]
    time_ticks: list[TimeTick] = []
    for shape in reversed(shapes):  # from the newest, labels far enough apart
        if len(time_ticks) == TIME_TICKS:
            break
        if not time_ticks or time_ticks[-1].x - shape.x >= TIME_LABEL_GAP:
            label_x = min(max(shape.x, TIME_LABEL_GAP / 2), plot_width - 30)
            time_ticks.append(TimeTick(shape.candle.start, round(label_x, 2)))
    time_ticks.reverse()
    return CandleChart(
        width,
        height,
        plot_width,
        plot_height,
        candle_width,
        shapes,
        high,
        low,
        price_ticks,
        time_ticks,
    )
