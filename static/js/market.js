// The market page, live: the stream (GET /api/v1/markets/<symbol>/stream/,
// Server-Sent Events) pushes the book, trades, ticker and, signed in, your
// orders, fills and balances as the matcher commits them. Without script the
// page shows the same on every reload.
(function () {
  "use strict";
  var live = document.getElementById("market-live");
  if (!live || !window.EventSource) return;
  var url = live.getAttribute("data-stream-url");
  var base = live.getAttribute("data-base");
  var quote = live.getAttribute("data-quote");
  var BOOK_DEPTH = 15;
  var TRADES_SHOWN = 30;
  var LIVE = { accepted: true, waiting: true, open: true };

  var book = { buy: new Map(), sell: new Map() };
  var sequence = null;
  var trades = [];
  var orders = new Map();
  var source = null;

  // Non-negative decimal strings, compared exactly (no float rounding).
  function compare(a, b) {
    var x = a.split("."), y = b.split(".");
    if (x[0].length !== y[0].length) return x[0].length - y[0].length;
    if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
    var fx = x[1] || "", fy = y[1] || "";
    var width = Math.max(fx.length, fy.length);
    fx = fx.padEnd(width, "0");
    fy = fy.padEnd(width, "0");
    return fx === fy ? 0 : fx < fy ? -1 : 1;
  }

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

  function renderBook() {
    var asks = Array.from(book.sell.entries()).sort(function (a, b) { return compare(a[0], b[0]); }).slice(0, BOOK_DEPTH).reverse();
    var bids = Array.from(book.buy.entries()).sort(function (a, b) { return compare(b[0], a[0]); }).slice(0, BOOK_DEPTH);
    [["tbody.asks", asks, "down", "No sell orders"], ["tbody.bids", bids, "up", "No buy orders"]].forEach(function (part) {
      var body = live.querySelector(part[0]);
      if (!body) return;
      var rows = part[1].map(function (level) {
        var tr = document.createElement("tr");
        tr.appendChild(cell(level[0], "num " + part[2]));
        tr.appendChild(cell(level[1], "num"));
        return tr;
      });
      body.replaceChildren.apply(body, rows.length ? rows : [emptyRow(2, part[3])]);
    });
  }

  function clock(iso) {
    var when = iso ? new Date(iso) : new Date();
    var time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = when.toTimeString().slice(0, 8);
    return time;
  }

  function renderTrades() {
    var body = live.querySelector("tbody.trade-rows");
    if (!body) return;
    var rows = trades.slice(0, TRADES_SHOWN).map(function (trade) {
      var tr = document.createElement("tr");
      tr.appendChild(cell(trade.price, "num " + (trade.taker_side === "buy" ? "up" : "down")));
      tr.appendChild(cell(trade.quantity, "num"));
      var td = document.createElement("td");
      td.appendChild(clock(trade.created_at));
      tr.appendChild(td);
      return tr;
    });
    body.replaceChildren.apply(body, rows.length ? rows : [emptyRow(3, "No trade yet")]);
  }

  function renderTicker(ticker) {
    ["last_price", "high_price", "low_price", "base_volume"].forEach(function (name) {
      var node = document.querySelector('[data-ticker="' + name + '"]');
      if (node) node.textContent = ticker[name] === null ? "—" : ticker[name];
    });
    var change = document.querySelector('[data-ticker="change_percent"]');
    if (change) {
      var value = ticker.change_percent;
      change.textContent = value === null ? "—" : (value.charAt(0) === "-" ? "" : "+") + value + " %";
      change.className = value === null || Number(value) === 0 ? "" : Number(value) > 0 ? "up" : "down";
    }
  }

  function renderBalances(balances) {
    balances.forEach(function (row) {
      document.querySelectorAll('[data-balance="' + row.token + '"]').forEach(function (node) {
        node.textContent = row.available;
      });
    });
  }

  function renderOrders() {
    var box = live.querySelector(".my-orders");
    var template = document.getElementById("open-order-row");
    if (!box || !template) return;
    var heading = box.querySelector("h2");
    // Keep focus on a cancel button the user is about to press.
    if (box.contains(document.activeElement) && document.activeElement !== box) return;
    var list = Array.from(orders.values()).sort(function (a, b) { return b.id - a.id; });
    var content;
    if (!list.length) {
      content = document.createElement("p");
      content.className = "muted";
      content.textContent = "No open order on this market.";
    } else {
      content = document.createElement("table");
      content.className = "data-table compact";
      content.innerHTML = '<thead><tr><th scope="col">Side</th><th scope="col" class="num">Price</th><th scope="col" class="num">Amount</th><th scope="col" class="num">Filled</th><th scope="col"><span class="visually-hidden">Cancel</span></th></tr></thead>';
      var body = document.createElement("tbody");
      list.forEach(function (order) {
        var row = template.content.firstElementChild.cloneNode(true);
        var side = row.querySelector('[data-field="side"]');
        side.className = order.side === "buy" ? "up" : "down";
        side.textContent = order.side === "buy" ? "Buy" : "Sell";
        var note = order.status === "waiting" ? "stop " + order.stop_price : order.status === "accepted" ? "accepted" : "";
        if (note) {
          var span = document.createElement("span");
          span.className = "muted";
          span.textContent = note;
          side.append(" ", span);
        }
        ["price", "quantity", "filled_quantity", "id"].forEach(function (name) {
          var value = order[name];
          row.querySelector('[data-field="' + name + '"]').textContent = value === null ? "—" : String(value);
        });
        var form = row.querySelector("form");
        form.action = form.getAttribute("action").replace(/\/0\/cancel\/$/, "/" + order.id + "/cancel/");
        body.appendChild(row);
      });
      content.appendChild(body);
    }
    box.replaceChildren(heading, content);
  }

  function notice(text) {
    var box = document.getElementById("fill-notices");
    if (!box) return;
    var line = document.createElement("p");
    line.className = "message message-success";
    line.textContent = text;
    box.prepend(line);
    while (box.children.length > 3) box.lastElementChild.remove();
    box.hidden = false;
  }

  function addFills(fills) {
    var box = live.querySelector(".my-trades");
    fills.forEach(function (fill) {
      var token = fill.side === "buy" ? base : quote;
      notice("Your " + fill.side + " order " + fill.order_id + " filled " + fill.quantity + " " + base + " at " + fill.price + " " + quote + " (fee " + fill.fee + " " + fill.fee_token + ").");
      if (!box || !token) return;
      var body = box.querySelector("tbody");
      if (!body) {
        var table = document.createElement("table");
        table.className = "data-table compact";
        table.innerHTML = '<thead><tr><th scope="col">Side</th><th scope="col" class="num">Price</th><th scope="col" class="num">Amount</th><th scope="col">Role</th><th scope="col">Time</th></tr></thead>';
        body = document.createElement("tbody");
        table.appendChild(body);
        box.replaceChildren(box.querySelector("h2"), table);
      }
      var tr = document.createElement("tr");
      tr.appendChild(cell(fill.side.charAt(0).toUpperCase() + fill.side.slice(1), fill.side === "buy" ? "up" : "down"));
      tr.appendChild(cell(fill.price, "num"));
      tr.appendChild(cell(fill.quantity, "num"));
      tr.appendChild(cell(fill.liquidity));
      var td = document.createElement("td");
      td.appendChild(clock(fill.created_at));
      tr.appendChild(td);
      body.prepend(tr);
    });
  }

  function updateOrders(rows) {
    rows.forEach(function (order) {
      if (LIVE[order.status]) orders.set(order.id, order);
      else orders.delete(order.id);
    });
    renderOrders();
  }

  function data(event) { return JSON.parse(event.data); }

  function restart() {
    // A fresh connection without Last-Event-ID: a full snapshot.
    if (source) source.close();
    connect();
  }

  function connect() {
    source = new EventSource(url, { withCredentials: true });
    source.addEventListener("snapshot", function (event) {
      var body = data(event);
      live.setAttribute("data-stream", "open");
      if (body.book) {
        book.buy = new Map(body.book.bids.map(function (l) { return [l.price, l.quantity]; }));
        book.sell = new Map(body.book.asks.map(function (l) { return [l.price, l.quantity]; }));
        sequence = body.sequence;
        renderBook();
      }
      if (body.trades) { trades = body.trades; renderTrades(); }
      if (body.ticker) renderTicker(body.ticker);
      if (body.balances) renderBalances(body.balances);
      if (body.orders) {
        orders = new Map();
        updateOrders(body.orders);
      }
    });
    source.addEventListener("book", function (event) {
      var levels = data(event).levels;
      if (sequence !== null && levels.length && levels[0].sequence !== sequence + 1) {
        restart(); // a level update is missing: start from a snapshot
        return;
      }
      levels.forEach(function (level) {
        var side = book[level.side];
        if (Number(level.quantity) === 0) side.delete(level.price);
        else side.set(level.price, level.quantity);
        sequence = level.sequence;
      });
      renderBook();
    });
    source.addEventListener("trades", function (event) {
      var fresh = data(event).trades.slice().reverse();
      trades = fresh.concat(trades).slice(0, TRADES_SHOWN);
      renderTrades();
    });
    source.addEventListener("ticker", function (event) { renderTicker(data(event).ticker); });
    source.addEventListener("balances", function (event) { renderBalances(data(event).balances); });
    source.addEventListener("orders", function (event) { updateOrders(data(event).orders); });
    source.addEventListener("fills", function (event) { addFills(data(event).fills); });
    // "resync": the server ends the stream; EventSource reconnects with the
    // last event's id and the server sends what was missed, or a snapshot.
    source.addEventListener("error", function () {
      live.setAttribute("data-stream", "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the stream unavailable for a moment): try again later.
        setTimeout(restart, 5000);
      }
    });
  }

  connect();
})();
