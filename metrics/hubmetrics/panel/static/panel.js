// Resource panel: polls the panel's own JSON API and fills the page.
// Only textContent is set from data (no HTML injection); no token is ever used
// here: the browser's HubOAuth cookie authenticates the same-origin requests.
(function () {
  "use strict";
  // the hub-styled page keeps its settings on #panel (page.html owns <body>); the embedded
  // capacity line on <body>
  var body = document.getElementById("panel") || document.body;
  var api = body.dataset.api;
  var intervalMs = parseInt(body.dataset.intervalMs, 10) || 5000;
  var capacityOnly = body.dataset.capacityOnly === "true";
  var isAdmin = body.dataset.admin === "true";
  var xsrf = body.dataset.xsrf;  // JupyterHub requires it on cookie-authenticated fetch()

  function $(id) { return document.getElementById(id); }
  function setText(id, text) { var el = $(id); if (el) { el.textContent = text; } }

  function bytes(n) {
    if (n === null || n === undefined) { return "–"; }
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }
  function cores(n) { return (n === null || n === undefined) ? "–" : n.toFixed(2); }
  function limitBytes(n) { return n ? bytes(n) : "none"; }
  function limitCores(n) { return n ? cores(n) : "none"; }

  function status(data, error) {
    var el = $("status");
    if (!el) { return; }
    var problems = [];
    if (error) { problems.push(error); }
    if (data && data.exporter_error) { problems.push(data.exporter_error); }
    if (data && data.stale) {
      Object.keys(data.stale).forEach(function (k) { if (data.stale[k]) { problems.push(k + " data is stale"); } });
    }
    el.className = problems.length ? "status error" : "status";
    if (problems.length) {
      el.textContent = problems.join("; ");
    } else if (data && data.time) {
      el.textContent = "Measured " + new Date(data.time * 1000).toLocaleTimeString();
    } else {
      el.textContent = "Waiting for the first measurement…";
    }
  }

  function showHost(host) {
    if (!host) { return; }
    setText("host-cpus", host.cpus === null ? "–" : String(host.cpus));
    setText("host-cpus-word", host.cpus === 1 ? "CPU" : "CPUs");
    setText("host-gpus-word", host.nvml_available ? (host.gpus_free === 1 ? " GPU free" : " GPUs free") : "");
    setText("host-mem", bytes(host.memory_available_bytes) + " of " + bytes(host.memory_total_bytes));
    setText("host-gpus", host.nvml_available ? host.gpus_free + " of " + host.gpus_total
      : host.nvml_absent ? "no GPUs on this machine" : "unknown (GPU data unavailable)");
  }

  function meter(id, value, max) {
    var el = $(id);
    if (!el) { return; }
    if (max && value !== null && value !== undefined) { el.max = max; el.value = value; el.hidden = false; }
    else { el.hidden = true; }
  }

  // History chart in a 360x140 viewBox: a plot area with the y scale (0, half, top, in the
  // series' unit) on the left, the time scale below, the limit dashed, the newest value named.
  var PLOT = { x0: 64, x1: 352, y0: 8, y1: 116 };
  function svgEl(svg, tag, attrs, text) {
    var el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) { el.textContent = text; }
    svg.appendChild(el);
    return el;
  }
  function ago(seconds) {
    return seconds >= 120 ? "−" + Math.round(seconds / 60) + " min" : "−" + Math.round(seconds) + " s";
  }
  function chart(id, points, key, limit, fmt) {
    var svg = $(id);
    if (!svg) { return; }
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var pts = points.filter(function (p) { return p[key] !== null && p[key] !== undefined; });
    setText(id + "-now", pts.length ? fmt(pts[pts.length - 1][key]) : "–");
    svgEl(svg, "rect", { "class": "plot", x: PLOT.x0, y: PLOT.y0, width: PLOT.x1 - PLOT.x0, height: PLOT.y1 - PLOT.y0 });
    if (pts.length < 2) {
      svgEl(svg, "text", { x: (PLOT.x0 + PLOT.x1) / 2, y: 66, "text-anchor": "middle" }, "collecting…");
      return;
    }
    var t0 = pts[0].time, t1 = pts[pts.length - 1].time;
    var top = Math.max(limit || 0, Math.max.apply(null, pts.map(function (p) { return p[key]; }))) || 1;
    function x(t) { return PLOT.x0 + (t - t0) / ((t1 - t0) || 1) * (PLOT.x1 - PLOT.x0); }
    function y(v) { return PLOT.y1 - v / top * (PLOT.y1 - PLOT.y0); }
    [0, top / 2, top].forEach(function (v) {
      svgEl(svg, "line", { "class": "tick", x1: PLOT.x0 - 3, x2: PLOT.x1, y1: y(v), y2: y(v) });
      svgEl(svg, "text", { "class": "y-tick", x: PLOT.x0 - 5, y: y(v) + 3, "text-anchor": "end" }, fmt(v));
    });
    svgEl(svg, "text", { "class": "x-tick", x: PLOT.x0, y: 132, "text-anchor": "start" }, ago(t1 - t0));
    svgEl(svg, "text", { "class": "x-tick", x: PLOT.x1, y: 132, "text-anchor": "end" }, "now");
    if (limit) {
      svgEl(svg, "line", { "class": "limit", x1: PLOT.x0, x2: PLOT.x1, y1: y(limit), y2: y(limit) });
    }
    svgEl(svg, "polyline", { points: pts.map(function (p) {
      return x(p.time).toFixed(1) + "," + y(p[key]).toFixed(1);
    }).join(" ") });
  }
  function coresUnit(n) { return (n === null || n === undefined) ? "–" : n.toFixed(2) + " cores"; }

  function showHome(home) {
    $("home-line").hidden = !home;
    if (!home) { return; }
    setText("home-use", bytes(home.used_bytes));
    setText("home-quota", home.quota_bytes ? bytes(home.quota_bytes) + " (quota)" : "no quota");
    meter("home-meter", home.used_bytes, home.quota_bytes);
  }

  function showMe(data) {
    showHome(data.home);
    var u = data.usage;
    $("no-server").hidden = !!u;
    $("usage-details").hidden = !u;
    u = u || {};
    setText("cpu-use", cores(u.cpu_cores));
    setText("cpu-limit", limitCores(u.cpu_limit_cores));
    setText("cpu-guarantee", limitCores(u.cpu_guarantee_cores));
    meter("cpu-meter", u.cpu_cores, u.cpu_limit_cores);
    setText("mem-use", bytes(u.memory_working_set_bytes));
    setText("mem-limit", limitBytes(u.memory_limit_bytes));
    setText("mem-guarantee", limitBytes(u.memory_guarantee_bytes));
    meter("mem-meter", u.memory_working_set_bytes, u.memory_limit_bytes);
    setText("gpu-use", bytes(u.gpu_memory_used_bytes));
    setText("gpu-ids", u.gpus && u.gpus.length ? "GPUs: " + u.gpus.join(", ") : "no GPU");
    showOoms(u.oom_events || []);
    chart("chart-cpu", data.history, "cpu_cores", u.cpu_limit_cores, coresUnit);
    chart("chart-mem", data.history, "memory_working_set_bytes", u.memory_limit_bytes, bytes);
  }

  function showOoms(events) {
    var list = $("oom-events");
    if (!list) { return; }
    while (list.firstChild) { list.removeChild(list.firstChild); }
    events.slice().reverse().forEach(function (e) {
      var li = document.createElement("li");
      li.textContent = e.message;
      list.appendChild(li);
    });
    $("oom-box").hidden = events.length === 0;
  }

  function showUsers(data) {
    var tbody = document.querySelector("#users-table tbody");
    if (!tbody) { return; }
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    if ($("users-node-head")) { $("users-node-head").hidden = !severalNodes; }
    Object.keys(data.users).sort().forEach(function (name) {
      var u = data.users[name] || {};
      var tr = document.createElement("tr");
      tr.dataset.user = name;
      [name, cores(u.cpu_cores), limitCores(u.cpu_limit_cores), bytes(u.memory_working_set_bytes),
        limitBytes(u.memory_limit_bytes), bytes(u.gpu_memory_used_bytes),
        (u.gpus || []).join(", ")].concat(severalNodes ? [u.node || "–"] : []).forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  // A swarm: every node's free guarantee capacity and the total; hidden with one node.
  var severalNodes = false;  // a swarm: the admins' table names each user's node
  function showCluster(cluster) {
    var many = severalNodes = !!cluster && cluster.nodes.length > 1;
    ["cluster", "cluster-line"].forEach(function (id) { var el = $(id); if (el) { el.hidden = !many; } });
    if (!many) { return; }
    var t = cluster.total;
    setText("total-cpus", cores(t.free_cpus) + " of " + cores(t.capacity_cpus));
    setText("total-mem", bytes(t.free_mem_bytes) + " of " + bytes(t.capacity_mem_bytes));
    setText("total-gpus", t.gpus_free + " of " + t.gpus_total);
    setText("nodes-up", t.nodes_up + " of " + t.nodes_total + " nodes answering");
    var tbody = document.querySelector("#nodes-table tbody");
    if (!tbody) { return; }
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    cluster.nodes.forEach(function (n) {
      var tr = document.createElement("tr");
      tr.dataset.node = n.name;
      var cells = n.up ? [n.name, cores(n.free_cpus) + " of " + cores(n.capacity_cpus),
        bytes(n.free_mem_bytes) + " of " + bytes(n.capacity_mem_bytes), n.gpus_free + " of " + n.gpus_total]
        : [n.name, "not answering: " + (n.error || "no data yet"), "–", "–"];
      if (!n.up) { tr.className = "down"; }
      cells.forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  function showNode(name) {
    var line = $("node-line");
    if (!line) { return; }
    line.hidden = !name;
    setText("user-node", name || "–");
  }

  function getJSON(path) {
    return fetch(api + path, { credentials: "same-origin", headers: { Accept: "application/json", "X-XSRFToken": xsrf } })
      .then(function (r) {
        if (!r.ok) { throw new Error("panel API answered HTTP " + r.status); }
        return r.json();
      });
  }

  function poll() {
    var done;
    if (capacityOnly) {
      done = getJSON("host").then(function (d) { showHost(d.host); showCluster(d.cluster); status(d); });
    } else {
      done = getJSON("me").then(function (d) {
        showHost(d.host); showMe(d); showCluster(d.cluster); status(d);
        showNode(d.cluster && d.cluster.nodes.length > 1 ? d.node : null);  // one server: as before
      });
      if (isAdmin) { done = done.then(function () { return getJSON("users"); }).then(showUsers); }
    }
    done.catch(function (e) { status(null, e.message); })
      .then(function () { window.setTimeout(poll, intervalMs); });
  }
  poll();
}());
