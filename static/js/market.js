// The market page. The live stream (GET /api/v1/markets/<symbol>/stream/,
// Server-Sent Events) pushes the book, trades, ticker, candles and, signed
// in, your orders, fills and balances as the matcher commits them; the chart
// (TradingView's lightweight-charts, static/vendor/) is fed by the candles
// API and kept current by the stream; the order form shows its total, fee
// and a "max", and takes a price clicked in the book. Without script the page
// shows the same on every reload, and the form is sent as a normal form.
(function () {
  "use strict";

  // -- Exact decimals ----------------------------------------------------------
  // Amounts come and go as decimal strings. What the page computes from them
  // (depth, totals, fees, "max") is exact: scaled integers on BigInt, never
  // floats. Only the chart draws with floats: pixels, not money.

  function dec(text) {
    if (text === null || text === undefined) return null;
    var match = /^\s*(-?)(\d*)(?:\.(\d*))?\s*$/.exec(String(text));
    if (!match || (match[2] === "" && !match[3])) return null;
    var fraction = match[3] || "";
    var n = BigInt((match[2] || "0") + fraction);
    return { n: match[1] ? -n : n, s: fraction.length };
  }
  var ZERO = { n: 0n, s: 0 };
  var ONE = { n: 1n, s: 0 };
  function scaled(a, scale) { return a.n * 10n ** BigInt(scale - a.s); }
  function add(a, b) {
    var scale = Math.max(a.s, b.s);
    return { n: scaled(a, scale) + scaled(b, scale), s: scale };
  }
  function sub(a, b) { return add(a, { n: -b.n, s: b.s }); }
  function mul(a, b) { return { n: a.n * b.n, s: a.s + b.s }; }
  function cmp(a, b) {
    var scale = Math.max(a.s, b.s);
    var x = scaled(a, scale), y = scaled(b, scale);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  function positive(a) { return a !== null && a.n > 0n; }
  // a / b, rounded down to a whole number of steps (a, b, step positive).
  function divDown(a, b, step) {
    var divisor = mul(b, step);
    var scale = Math.max(a.s, divisor.s);
    return { n: (scaled(a, scale) / scaled(divisor, scale)) * step.n, s: step.s };
  }
  function floorTo(a, step) { return divDown(a, ONE, step); }
  function ceilTo(a, step) {
    var down = floorTo(a, step);
    return cmp(down, a) < 0 ? add(down, step) : down;
  }
  // a to `places` decimals, halves away from zero (as toFixed).
  function rounded(a, places) {
    if (a.s <= places) return a;
    var unit = 10n ** BigInt(a.s - places), n = a.n / unit, rest = a.n % unit;
    if ((rest < 0n ? -rest : rest) * 2n >= unit) n += a.n < 0n ? -1n : 1n;
    return { n: n, s: places };
  }
  // The decimal a float stands for: its first 15 significant digits, all it
  // holds exactly; past them toFixed writes binary noise (0.1 to 18 decimals
  // is 0.100000000000000006).
  function fromFloat(value) {
    var parts = value.toPrecision(15).split("e");
    var a = dec(parts[0]), shift = Number(parts[1] || 0);
    return shift > a.s ? { n: a.n * 10n ** BigInt(shift - a.s), s: 0 } : { n: a.n, s: a.s - shift };
  }
  // a / b x 100 with two decimals, half up (as the page's server side).
  function percentOf(a, b) {
    var scale = Math.max(a.s, b.s);
    var x = scaled(a, scale) * 10000n, y = scaled(b, scale);
    var q = x / y;
    if ((x % y) * 2n >= y) q += 1n;
    return { n: q, s: 2 };
  }
  function plain(a) {
    var negative = a.n < 0n;
    var digits = (negative ? -a.n : a.n).toString();
    if (a.s > 0) {
      digits = digits.padStart(a.s + 1, "0");
      var point = digits.length - a.s;
      var fraction = digits.slice(point).replace(/0+$/, "");
      digits = digits.slice(0, point) + (fraction ? "." + fraction : "");
    }
    return (negative && /[1-9]/.test(digits) ? "-" : "") + digits;
  }
  function fixed(a, places) {
    var text = plain(a);
    var fraction = (text.split(".")[1] || "").length;
    if (fraction >= places) return text;
    return text + (fraction ? "" : ".") + "0".repeat(places - fraction);
  }
  // Thousands grouped, the decimals kept exactly: what the `amount` template
  // filter shows for the same value.
  function group(text) {
    if (text === null || text === undefined || text === "") return "—";
    var parts = String(text).split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return parts.join(".");
  }
  function shown(a) { return group(plain(a)); }

  // -- Small helpers -------------------------------------------------------------

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function emptyRow(columns, text) {
    var tr = document.createElement("tr");
    var td = cell(text, "muted");
    td.colSpan = columns;
    tr.appendChild(td);
    return tr;
  }

  // Times are shown in UTC, as the server renders them.
  function clock(iso) {
    var time = document.createElement("time");
    var when = iso ? new Date(iso) : new Date(NaN);
    if (isNaN(when.getTime())) {
      // No time in the event: the moment it arrived, which is close.
      when = new Date();
      time.title = "Received at";
      iso = when.toISOString();
    }
    time.dateTime = iso;
    time.textContent = when.toISOString().slice(11, 19);
    return time;
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  // A day and time, in UTC as the server renders "Your trades": "6 Dec 2026 09:30".
  function dayClock(iso) {
    var time = document.createElement("time");
    var when = new Date(iso);
    time.dateTime = iso;
    time.textContent = when.getUTCDate() + " " + MONTHS[when.getUTCMonth()] + " " + when.getUTCFullYear() + " " + when.toISOString().slice(11, 16);
    return time;
  }

  var live = document.getElementById("market-live");
  var form = document.getElementById("order-form");
  var chartCard = document.getElementById("chart");
  if (!live) return;
  var base = live.getAttribute("data-base");
  var quote = live.getAttribute("data-quote");
  var marketUrl = live.getAttribute("data-market-url");
  var BOOK_DEPTH = 15;
  var TRADES_SHOWN = 30;
  var FILLS_SHOWN = 20; // as many as the page renders
  var LIVE = { accepted: true, waiting: true, open: true };

  // -- Order book ------------------------------------------------------------------

  var book = { buy: new Map(), sell: new Map() };
  // The levels as the page was rendered, until the stream's snapshot.
  [["sell", "tbody.asks"], ["buy", "tbody.bids"]].forEach(function (part) {
    live.querySelectorAll(part[1] + " tr[data-price]").forEach(function (row) {
      book[part[0]].set(row.getAttribute("data-price"), row.getAttribute("data-quantity"));
    });
  });

  function levels(side) {
    var sign = side === "sell" ? 1 : -1;
    return Array.from(book[side].entries())
      .map(function (level) { return { price: level[0], quantity: level[1], p: dec(level[0]), q: dec(level[1]) }; })
      .sort(function (a, b) { return sign * cmp(a.p, b.p); });
  }

  function bookRow(level, className, deepest) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-price", level.price);
    tr.setAttribute("data-quantity", level.quantity);
    var price = document.createElement("td");
    price.className = "num " + className;
    if (form) {
      var link = document.createElement("a");
      link.className = "price-pick";
      link.href = marketUrl + "?price=" + encodeURIComponent(level.price) + "#order-form";
      link.textContent = group(level.price);
      price.appendChild(link);
    } else {
      price.textContent = group(level.price);
    }
    tr.appendChild(price);
    tr.appendChild(cell(group(level.quantity), "num"));
    tr.appendChild(cell(shown(level.total), "num depth"));
    // A bar as wide as the depth so far, against the deepest side shown.
    var width = deepest > 0 ? Math.min(100, (Number(plain(level.total)) / deepest) * 100) : 0;
    tr.style.setProperty("--depth", width.toFixed(1) + "%");
    return tr;
  }

  function renderBook() {
    var asks = levels("sell").slice(0, BOOK_DEPTH);
    var bids = levels("buy").slice(0, BOOK_DEPTH);
    [asks, bids].forEach(function (side) {
      var total = ZERO;
      side.forEach(function (level) { total = add(total, level.q); level.total = total; });
    });
    var deepest = Math.max(
      asks.length ? Number(plain(asks[asks.length - 1].total)) : 0,
      bids.length ? Number(plain(bids[bids.length - 1].total)) : 0
    );
    [["tbody.asks", asks.slice().reverse(), "down", "No sell orders"], ["tbody.bids", bids, "up", "No buy orders"]].forEach(function (part) {
      var body = live.querySelector(part[0]);
      if (!body) return;
      // A price the user tabbed to keeps focus in the new rows: its level's
      // link, or the one now in its place if the level is gone.
      var focused = body.contains(document.activeElement) ? document.activeElement.closest("tr") : null;
      var place = focused ? Array.from(body.rows).indexOf(focused) : -1;
      var rows = part[1].map(function (level) { return bookRow(level, part[2], deepest); });
      body.replaceChildren.apply(body, rows.length ? rows : [emptyRow(3, part[3])]);
      if (!focused) return;
      var row = rows.filter(function (tr) { return tr.getAttribute("data-price") === focused.getAttribute("data-price"); })[0] ||
        rows[Math.min(place, rows.length - 1)];
      var link = row && row.querySelector("a.price-pick");
      // Where the user scrolled to stays: focus without bringing the book back.
      if (link) link.focus({ preventScroll: true });
    });
    var spread = live.querySelector("[data-spread]");
    if (spread) {
      if (asks.length && bids.length) {
        var gap = sub(asks[0].p, bids[0].p);
        spread.textContent = "Spread " + shown(gap) + " (" + fixed(percentOf(gap, asks[0].p), 2) + " %)";
      } else {
        spread.textContent = "Spread —";
      }
    }
    estimate();
  }

  // -- Trades, ticker, balances, your orders and fills --------------------------------

  var trades = [];

  function renderTrades() {
    var body = live.querySelector("tbody.trade-rows");
    if (!body) return;
    var rows = trades.slice(0, TRADES_SHOWN).map(function (trade) {
      var tr = document.createElement("tr");
      tr.appendChild(cell(group(trade.price), "num " + (trade.taker_side === "buy" ? "up" : "down")));
      tr.appendChild(cell(group(trade.quantity), "num"));
      var td = document.createElement("td");
      td.appendChild(clock(trade.time || trade.created_at));
      tr.appendChild(td);
      return tr;
    });
    body.replaceChildren.apply(body, rows.length ? rows : [emptyRow(3, "No trade yet")]);
  }

  function renderTicker(ticker) {
    ["last_price", "high_price", "low_price", "base_volume"].forEach(function (name) {
      var node = document.querySelector('[data-ticker="' + name + '"]');
      if (node) node.textContent = ticker[name] === null ? "—" : group(ticker[name]);
    });
    var change = document.querySelector('[data-ticker="change_percent"]');
    if (change) {
      var value = ticker.change_percent === null ? null : dec(ticker.change_percent);
      // The sign goes by the value: "-0.00", a fall too small to show, is no change.
      change.textContent = value === null ? "—" : (value.n < 0n ? "-" : "+") + group(String(ticker.change_percent).replace(/^\s*-/, "")) + " %";
      change.className = value === null || value.n === 0n ? "" : value.n > 0n ? "up" : "down";
    }
  }

  function renderBalances(balances) {
    balances.forEach(function (row) {
      document.querySelectorAll('[data-balance="' + row.token + '"]').forEach(function (node) {
        node.setAttribute("data-value", row.available);
        node.textContent = group(row.available);
      });
    });
    estimate();
  }

  var orders = new Map();

  function renderOrders() {
    var box = live.querySelector(".my-orders");
    var template = document.getElementById("open-order-row");
    if (!box || !template) return;
    var heading = box.querySelector("h2");
    // Keep focus on a cancel button the user is about to press.
    if (box.contains(document.activeElement) && document.activeElement !== box) return;
    var list = Array.from(orders.values()).sort(function (a, b) { return b.id - a.id; });
    var head = '<th scope="col">Side</th><th scope="col" class="num">Price</th><th scope="col" class="num">Amount</th><th scope="col" class="num">Filled</th><th scope="col"><span class="visually-hidden">Cancel</span></th>';
    box.replaceChildren(heading, listOrTable(list, "No open order on this market.", head, function (order) {
      var row = template.content.firstElementChild.cloneNode(true);
      var side = row.querySelector('[data-field="side"]');
      side.className = order.side === "buy" ? "up" : "down";
      side.textContent = order.side === "buy" ? "Buy" : "Sell";
      var note = order.status === "waiting" ? "stop " + group(order.stop_price) : order.status === "accepted" ? "accepted" : "";
      if (note) {
        var span = document.createElement("span");
        span.className = "muted";
        span.textContent = note;
        side.append(" ", span);
      }
      ["price", "quantity", "filled_quantity"].forEach(function (name) {
        row.querySelector('[data-field="' + name + '"]').textContent = order[name] === null ? "—" : group(order[name]);
      });
      // A market order has no price, and one by quote amount no quantity.
      if (order.type === "market") row.querySelector('[data-field="price"]').textContent = "Market";
      if (order.quantity === null && order.quote_amount !== null) {
        row.querySelector('[data-field="quantity"]').textContent = "spend " + group(order.quote_amount) + " " + quote;
      }
      row.querySelector('[data-field="id"]').textContent = String(order.id);
      var cancel = row.querySelector("form");
      cancel.action = cancel.getAttribute("action").replace(/\/0\/cancel\/$/, "/" + order.id + "/cancel/");
      return row;
    }));
  }

  // A muted line when there is nothing to list, else a table of one row per item.
  function listOrTable(items, emptyText, headCells, makeRow) {
    if (!items.length) {
      var line = document.createElement("p");
      line.className = "muted";
      line.textContent = emptyText;
      return line;
    }
    var table = document.createElement("table");
    table.className = "data-table compact stack";
    table.innerHTML = "<thead><tr>" + headCells + "</tr></thead>";
    var body = document.createElement("tbody");
    items.forEach(function (item) { body.appendChild(makeRow(item)); });
    table.appendChild(body);
    return table;
  }

  function notice(text) {
    var box = document.getElementById("fill-notices");
    if (!box) return;
    var line = document.createElement("p");
    line.className = "message message-success";
    line.textContent = text;
    box.prepend(line);
    while (box.children.length > 3) box.lastElementChild.remove();
  }

  // Your fills, newest first, as the stream has them (null: as rendered), and
  // the newest the page has shown: a newer one gets a notice.
  var fills = null;
  var lastFill = Number(live.getAttribute("data-last-fill")) || 0;

  function fillRow(fill) {
    var tr = document.createElement("tr");
    tr.appendChild(cell(fill.side.charAt(0).toUpperCase() + fill.side.slice(1), fill.side === "buy" ? "up" : "down"));
    tr.appendChild(cell(group(fill.price), "num"));
    tr.appendChild(cell(group(fill.quantity), "num"));
    tr.appendChild(cell(fill.liquidity));
    var td = document.createElement("td");
    td.appendChild(dayClock(fill.created_at));
    tr.appendChild(td);
    ["Side", "Price", "Amount", "Role", "Time (UTC)"].forEach(function (label, index) {
      tr.children[index].setAttribute("data-label", label);
    });
    return tr;
  }

  function renderFills() {
    var box = live.querySelector(".my-trades");
    if (!box) return;
    var head = '<th scope="col">Side</th><th scope="col" class="num">Price</th><th scope="col" class="num">Amount</th><th scope="col">Role</th><th scope="col">Time (UTC)</th>';
    box.replaceChildren(box.querySelector("h2"), listOrTable(fills, "You have not traded on this market yet.", head, fillRow));
  }

  // `rows`: a snapshot's latest fills (`whole`), or new ones. A fill comes
  // again after a reconnect, in the snapshot and its catch-up: it shows once,
  // by its trade id.
  function takeFills(rows, whole) {
    var byId = new Map();
    if (!whole && fills) fills.forEach(function (fill) { byId.set(fill.id, fill); });
    rows.forEach(function (fill) { byId.set(fill.id, fill); });
    var list = Array.from(byId.values()).sort(function (a, b) { return b.id - a.id; });
    list.slice().reverse().forEach(function (fill) {
      if (fill.id <= lastFill) return;
      lastFill = fill.id;
      notice("Your " + fill.side + " order " + fill.order_id + " filled " + group(fill.quantity) + " " + base + " at " + group(fill.price) + " " + quote + " (fee " + group(fill.fee) + " " + fill.fee_token + ").");
    });
    fills = list.slice(0, FILLS_SHOWN);
    renderFills();
  }

  function updateOrders(rows) {
    rows.forEach(function (order) {
      if (LIVE[order.status]) orders.set(order.id, order);
      else orders.delete(order.id);
    });
    renderOrders();
  }

  // -- Order form: estimate, max, a price from the book ------------------------------

  var field = form ? form.elements : null;

  function checked(name) {
    var input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : null;
  }

  function availableOf(token) {
    var node = document.querySelector('[data-balance="' + token + '"]');
    return node ? dec(node.getAttribute("data-value")) || ZERO : ZERO;
  }

  // What a market order of `quantity` base (or spending `spend` quote) would
  // take from the book now, never above a buy's `cap` (its protection price,
  // or null): {quantity, value (in quote), capped (stopped at the cap)}.
  function sweep(side, quantity, spend, cap) {
    var amountStep = dec(form.getAttribute("data-amount-step"));
    var taken = ZERO, value = ZERO, capped = false;
    var opposite = levels(side === "buy" ? "sell" : "buy");
    for (var i = 0; i < opposite.length; i++) {
      var level = opposite[i];
      var take = level.q;
      if (quantity) {
        var left = sub(quantity, taken);
        if (cmp(left, take) < 0) take = left;
      } else {
        var budget = sub(spend, value);
        if (cmp(mul(level.p, take), budget) > 0) take = divDown(budget, level.p, amountStep);
      }
      if (!positive(take)) break;
      if (cap && cmp(level.p, cap) > 0) {
        capped = true;
        break;
      }
      taken = add(taken, take);
      value = add(value, mul(level.p, take));
    }
    return { quantity: taken, value: value, capped: capped };
  }

  function rateText(rate) { return plain(mul(rate, { n: 100n, s: 0 })) + " %"; }

  function estimate() {
    if (!form) return;
    var box = form.querySelector("[data-estimate]");
    var totalNode = form.querySelector("[data-estimate-total]");
    var feeNode = form.querySelector("[data-estimate-fee]");
    var side = checked("side"), type = checked("type");
    var quantity = dec(field.quantity.value);
    var price = dec(field.price.value);
    var spend = dec(field.quote_amount.value);
    var postOnly = type === "limit" && field.post_only.checked;
    var makerRate = dec(form.getAttribute("data-maker-fee"));
    var takerRate = dec(form.getAttribute("data-taker-fee"));
    // A limit order pays the taker rate on what crosses the book and the maker
    // rate on what rests: the estimate takes the higher of the two.
    var role = postOnly || (type !== "market" && cmp(makerRate, takerRate) > 0) ? "maker" : "taker";
    var rate = role === "maker" ? makerRate : takerRate;
    var baseUnit = dec(form.getAttribute("data-base-unit"));
    var quoteUnit = dec(form.getAttribute("data-quote-unit"));
    var total = "—", fee = "—";
    var received = null, value = null, approximate = false, short = "";
    if (type !== "market") {
      if (positive(quantity) && positive(price)) {
        received = quantity;
        value = mul(price, quantity);
      }
    } else if (side === "buy" && positive(spend)) {
      var bought = sweep("buy", null, spend, null);
      received = bought.quantity;
      value = spend;
      approximate = true;
      if (!positive(bought.quantity)) short = " (no sell order in the book)";
    } else if (positive(quantity)) {
      var cap = dec(field.protection_price.value);
      var swept = sweep(side, quantity, null, side === "buy" && positive(cap) ? cap : null);
      received = swept.quantity;
      value = swept.value;
      approximate = true;
      if (swept.capped && !positive(swept.quantity)) short = " (nothing offered at or below your price)";
      else if (swept.capped) short = " for " + shown(swept.quantity) + " " + base + " at or below your price";
      else if (cmp(swept.quantity, quantity) < 0) short = " (the book holds " + shown(swept.quantity) + " " + base + ")";
    }
    if (value !== null) {
      total = (approximate ? "≈ " : "") + shown(value) + " " + quote + short;
    }
    if (value !== null && positive(received)) {
      // A buyer pays the fee in what is received (base), a seller in quote.
      var charged = side === "buy" ? ceilTo(mul(received, rate), baseUnit) : ceilTo(mul(value, rate), quoteUnit);
      var token = side === "buy" ? base : quote;
      // A limit buy's fee is on the amount bought, whatever price it fills at;
      // a limit sell's is on what it receives, more if it fills above its price.
      var kind = postOnly || type === "market" ? role
        : side === "buy" ? "at most, as " + role
        : "as " + role + ", at your limit price; more if it sells higher";
      fee = (approximate ? "≈ " : "") + shown(charged) + " " + token + " (" + rateText(rate) + ", " + kind + ")";
    }
    totalNode.textContent = total;
    feeNode.textContent = fee;
    box.hidden = false;
  }

  function bestPrice(side) {
    var best = levels(side)[0];
    return best ? best.price : null;
  }

  function setValue(input, value) {
    input.value = value;
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function fillMax() {
    var side = checked("side"), type = checked("type");
    var amountStep = dec(form.getAttribute("data-amount-step"));
    if (side === "sell") {
      setValue(field.quantity, plain(floorTo(availableOf(base), amountStep)));
      return;
    }
    var funds = availableOf(quote);
    if (type === "market") {
      var cap = dec(field.protection_price.value);
      if (positive(cap)) {
        setValue(field.quantity, plain(divDown(funds, cap, amountStep)));
      } else {
        setValue(field.quantity, "");
        setValue(field.quote_amount, plain(floorTo(funds, dec(form.getAttribute("data-quote-unit")))));
      }
      return;
    }
    var price = dec(field.price.value);
    if (!positive(price)) {
      // No price yet: the best offer's, as a start.
      var ask = bestPrice("sell");
      if (ask === null) {
        field.price.focus();
        return;
      }
      setValue(field.price, ask);
      price = dec(ask);
    }
    setValue(field.quantity, plain(divDown(funds, price, amountStep)));
  }

  if (form) {
    form.addEventListener("input", estimate);
    form.addEventListener("change", estimate);
    var max = form.querySelector("[data-max]");
    if (max) {
      max.hidden = false;
      max.addEventListener("click", fillMax);
    }
    live.addEventListener("click", function (event) {
      var link = event.target.closest("a.price-pick");
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
      event.preventDefault();
      var row = link.closest("tr");
      if (checked("type") === "market") {
        var limit = form.querySelector('input[name="type"][value="limit"]');
        if (limit) limit.checked = true;
      }
      setValue(field.price, row.getAttribute("data-price"));
      field.price.focus();
    });
    estimate();
  }
  renderBook(); // the depth bars of the rendered book

  // -- Chart ----------------------------------------------------------------------------

  var chart = (function chartStart() {
    var Charts = window.LightweightCharts;
    if (!chartCard || !Charts || !window.fetch) return null;
    var frame = chartCard.querySelector("[data-chart-frame]");
    var box = chartCard.querySelector("[data-chart-box]");
    var empty = chartCard.querySelector("[data-chart-empty]");
    var legend = chartCard.querySelector("[data-chart-legend]");
    var links = Array.from(chartCard.querySelectorAll(".intervals a[data-interval]"));
    var candlesUrl = chartCard.getAttribute("data-candles-url");
    var CANDLES = 300;
    var css = getComputedStyle(document.documentElement);
    function color(name, otherwise) { return css.getPropertyValue(name).trim() || otherwise; }
    function faint(value) { return /^#[0-9a-f]{6}$/i.test(value) ? value + "66" : value; }
    var up = color("--success", "#0f7a3d"), down = color("--danger", "#b42318");
    var line = color("--border", "#d9dee8");
    var fallback = chartCard.querySelector("[data-chart-fallback]");
    var credit = chartCard.querySelector("[data-chart-credit]");
    // Prices as the page writes them, rounded to the step's decimals. The
    // library's own "price" format cannot: it throws past 16 decimals, and on
    // a step whose inverse is not made of 2s and 5s (0.03).
    var places = (chartCard.getAttribute("data-price-step").split(".")[1] || "").length;
    function priceText(value) {
      return isFinite(value) ? shown(rounded(fromFloat(value), places)) : String(value);
    }

    // The page's own picture of the chart stays until the library has drawn:
    // if it throws, setting up or drawing, that picture is what the user keeps.
    var view = null, candles, volume;
    function fallBack() {
      if (view) view.remove();
      view = null;
      frame.hidden = legend.hidden = credit.hidden = true;
      fallback.hidden = false;
    }
    // The library draws in an animation frame, where its errors escape this
    // script: a screenshot draws the same at once, where they can be caught.
    function drawn() {
      try {
        view.takeScreenshot();
        return true;
      } catch (error) {
        fallBack();
        return false;
      }
    }

    frame.hidden = false; // shown first: the chart takes its size from it
    try {
      view = Charts.createChart(box, {
        autoSize: true,
        layout: {
          background: { type: Charts.ColorType.Solid, color: color("--surface", "#ffffff") },
          textColor: color("--muted", "#4b5563"),
          fontFamily: getComputedStyle(document.body).fontFamily,
          // Its logo injects an inline <style>, which the site's CSP refuses;
          // the page credits TradingView under the chart instead.
          attributionLogo: false,
        },
        grid: { vertLines: { color: line }, horzLines: { color: line } },
        crosshair: { mode: Charts.CrosshairMode.Normal },
        rightPriceScale: { borderColor: line },
        timeScale: { borderColor: line, timeVisible: true, secondsVisible: false, rightOffset: 4, barSpacing: 10 },
      });
      candles = view.addSeries(Charts.CandlestickSeries, {
        upColor: up, downColor: down, borderUpColor: up, borderDownColor: down, wickUpColor: up, wickDownColor: down,
        // The price scale's marks fall on 1, 2 and 5 times powers of ten, down
        // to the step's decimals; `base`, because the library takes 1 / minMove
        // as it comes, and 1 / 1e-18 is not quite 1e18 in floats.
        priceFormat: { type: "custom", formatter: priceText, minMove: Number("1e-" + places), base: Number("1e" + places) },
      });
      candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.28 } });
      volume = view.addSeries(Charts.HistogramSeries, {
        priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false,
      });
      view.priceScale("volume").applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
    } catch (error) {
      fallBack();
      return null;
    }
    fallback.hidden = true;
    credit.hidden = false;
    legend.hidden = false;

    var state = { interval: chartCard.getAttribute("data-interval"), seconds: 3600, rows: new Map(), last: null, loaded: false, ticket: 0 };
    links.forEach(function (link) {
      if (link.getAttribute("data-interval") === state.interval) state.seconds = Number(link.getAttribute("data-seconds"));
    });

    function seconds(iso) { return Math.floor(Date.parse(iso) / 1000); }
    function bar(row) {
      return { time: seconds(row.open_time), open: Number(row.open), high: Number(row.high), low: Number(row.low), close: Number(row.close) };
    }
    function volumeBar(row) {
      return { time: seconds(row.open_time), value: Number(row.volume), color: faint(cmp(dec(row.close), dec(row.open)) >= 0 ? up : down) };
    }
    function when(time) {
      var text = new Date(time * 1000).toISOString();
      return state.seconds >= 86400 ? text.slice(0, 10) : text.slice(0, 10) + " " + text.slice(11, 16);
    }
    function showLegend(time) {
      var row = time === undefined ? null : state.rows.get(time);
      if (!row && state.last !== null) row = state.rows.get(state.last);
      legend.textContent = row
        ? when(seconds(row.open_time)) + " UTC · O " + group(row.open) + " H " + group(row.high) + " L " + group(row.low) + " C " + group(row.close) + " · Vol " + group(row.volume) + " " + base
        : "";
    }

    function put(row) {
      var time = seconds(row.open_time);
      if (state.last !== null && time < state.last) return; // the chart only moves forward
      state.rows.set(time, row);
      state.last = time;
      candles.update(bar(row));
      volume.update(volumeBar(row));
      empty.hidden = true;
      showLegend();
    }

    function load(interval) {
      var ticket = ++state.ticket;
      state.loaded = false;
      chartCard.setAttribute("aria-busy", "true");
      var url = candlesUrl + "?interval=" + encodeURIComponent(interval) + "&limit=" + CANDLES;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("candles: HTTP " + response.status);
          return response.json();
        })
        .then(function (rows) {
          if (ticket !== state.ticket) return; // another interval was chosen meanwhile
          state.rows = new Map();
          rows.forEach(function (row) { state.rows.set(seconds(row.open_time), row); });
          state.last = rows.length ? seconds(rows[rows.length - 1].open_time) : null;
          candles.setData(rows.map(bar));
          volume.setData(rows.map(volumeBar));
          if (!drawn()) return;
          view.timeScale().applyOptions({ timeVisible: state.seconds < 86400 });
          view.timeScale().scrollToRealTime();
          empty.textContent = "No trade in this period yet.";
          empty.hidden = rows.length > 0;
          state.loaded = true;
          chartCard.setAttribute("data-candles", interval);
          showLegend();
        })
        .catch(function () {
          if (ticket !== state.ticket) return;
          empty.textContent = "The chart could not be loaded; reload the page to try again.";
          empty.hidden = false;
        })
        .finally(function () {
          if (ticket === state.ticket) chartCard.removeAttribute("aria-busy");
        });
    }

    links.forEach(function (link) {
      link.addEventListener("click", function (event) {
        if (view === null || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
        event.preventDefault();
        links.forEach(function (other) { other.removeAttribute("aria-current"); });
        link.setAttribute("aria-current", "true");
        state.interval = link.getAttribute("data-interval");
        state.seconds = Number(link.getAttribute("data-seconds"));
        history.replaceState(null, "", link.href);
        load(state.interval);
      });
    });
    view.subscribeCrosshairMove(function (param) { showLegend(param && param.time); });
    load(state.interval);

    return {
      // The current candles of every interval, as the stream sends them.
      candles: function (current) {
        var row = current && current[state.interval];
        if (row && state.loaded) put(row);
      },
      // New trades, oldest first: the last candle moves at once; the
      // stream's next candles event then gives its exact figures.
      trades: function (list) {
        if (!state.loaded) return;
        list.forEach(function (trade) {
          if (!trade.time) return;
          var start = Math.floor(seconds(trade.time) / state.seconds) * state.seconds;
          var row = state.rows.get(start);
          var price = dec(trade.price);
          if (row) {
            row = {
              open_time: row.open_time,
              open: row.open,
              high: cmp(price, dec(row.high)) > 0 ? trade.price : row.high,
              low: cmp(price, dec(row.low)) < 0 ? trade.price : row.low,
              close: trade.price,
              volume: plain(add(dec(row.volume), dec(trade.quantity))),
            };
          } else {
            row = {
              open_time: new Date(start * 1000).toISOString(),
              open: trade.price, high: trade.price, low: trade.price, close: trade.price,
              volume: trade.quantity,
            };
          }
          put(row);
        });
      },
    };
  })();

  // -- The stream ------------------------------------------------------------------------

  var url = live.getAttribute("data-stream-url");
  if (!url || !window.EventSource) return;
  var sequence = null;
  var source = null;

  function data(event) { return JSON.parse(event.data); }

  // Live updates that stop say so: when the stream has not been open for
  // this long (never since the page loaded, or not since an error: it is
  // down, or refuses this page's origin), a notice asks for a reload, until
  // the stream opens again. Its live region is on the page, empty, from the
  // start: one added with its first line may not be announced.
  var STALE_AFTER = 10000;
  var staleNotice = document.getElementById("stream-notice");
  var staleTimer = null;

  function staleSoon() {
    if (staleTimer === null) staleTimer = setTimeout(staleShow, STALE_AFTER);
  }

  function staleShow() {
    staleTimer = null;
    if (!staleNotice || staleNotice.firstChild) return;
    var line = document.createElement("p");
    line.className = "alert alert-warn";
    line.textContent = "Live updates are not reaching this page; reload it to see the latest.";
    staleNotice.appendChild(line);
  }

  function liveAgain() {
    clearTimeout(staleTimer);
    staleTimer = null;
    if (staleNotice) staleNotice.textContent = "";
  }

  function restart() {
    // A fresh connection without Last-Event-ID: a full snapshot.
    if (source) source.close();
    connect();
  }

  function connect() {
    staleSoon();
    source = new EventSource(url, { withCredentials: true });
    source.addEventListener("snapshot", function (event) {
      var body = data(event);
      live.setAttribute("data-stream", "open");
      liveAgain();
      if (body.book) {
        book.buy = new Map(body.book.bids.map(function (l) { return [l.price, l.quantity]; }));
        book.sell = new Map(body.book.asks.map(function (l) { return [l.price, l.quantity]; }));
        sequence = body.sequence;
        renderBook();
      }
      if (body.trades) { trades = body.trades; renderTrades(); }
      if (body.ticker) renderTicker(body.ticker);
      if (body.candles && chart) chart.candles(body.candles);
      if (body.balances) renderBalances(body.balances);
      if (body.orders) {
        orders = new Map();
        updateOrders(body.orders);
      }
      if (body.fills) takeFills(body.fills, true);
    });
    source.addEventListener("book", function (event) {
      var changed = data(event).levels;
      if (sequence !== null && changed.length && changed[0].sequence !== sequence + 1) {
        restart(); // a level update is missing: start from a snapshot
        return;
      }
      changed.forEach(function (level) {
        var side = book[level.side];
        var quantity = dec(level.quantity);
        if (quantity === null || quantity.n === 0n) side.delete(level.price);
        else side.set(level.price, level.quantity);
        sequence = level.sequence;
      });
      renderBook();
    });
    source.addEventListener("trades", function (event) {
      var fresh = data(event).trades;
      trades = fresh.slice().reverse().concat(trades).slice(0, TRADES_SHOWN);
      renderTrades();
      if (chart) chart.trades(fresh);
    });
    source.addEventListener("ticker", function (event) { renderTicker(data(event).ticker); });
    source.addEventListener("candles", function (event) { if (chart) chart.candles(data(event).candles); });
    source.addEventListener("balances", function (event) { renderBalances(data(event).balances); });
    source.addEventListener("orders", function (event) { updateOrders(data(event).orders); });
    source.addEventListener("fills", function (event) { takeFills(data(event).fills, false); });
    // "resync": the server ends the stream; EventSource reconnects with the
    // last event's id and the server sends what was missed, or a snapshot.
    // "revoked": this browser is signed out (the session was ended elsewhere,
    // the account disabled); what the page shows of the account goes with it.
    source.addEventListener("resync", function (event) {
      if (data(event).reason === "revoked") window.location.reload();
    });
    source.addEventListener("error", function () {
      live.setAttribute("data-stream", "reconnecting");
      staleSoon();
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the stream unavailable for a moment): try again later.
        setTimeout(restart, 5000);
      }
    });
  }

  connect();
})();
