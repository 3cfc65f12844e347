"""The dashboard's HTML page and the security headers every dashboard answer carries.

The page is a static shell: ``static/dashboard.js`` fills it from ``/_gateway/api/dashboard``
every two seconds and draws the plots as inline SVG; ``static/dashboard.css`` styles it. No
inline script or style anywhere, so the Content-Security-Policy can forbid both.
"""

from __future__ import annotations

#: Scripts, styles, fetches and images from this origin only; nothing may frame the page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Migration dashboard - gateway</title>
<link rel="stylesheet" href="/_gateway/static/dashboard.css">
<script src="/_gateway/static/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>Migration dashboard</h1>
  <span id="who"></span>
  <span id="updated" class="muted">loading...</span>
  <button id="kill-switch" type="button" class="danger">Kill switch</button>
</header>
<p id="error" class="error" hidden></p>
<p id="killed" class="banner" hidden>Kill switch ON: every flagged route is served by legacy.</p>
<main>
  <section id="progress">
    <h2>Migration progress</h2>
    <div id="states" class="tiles"></div>
    <div id="shares" class="tiles"></div>
  </section>
  <section id="plots">
    <h2>Traffic, last 15 minutes</h2>
    <div class="plots">
      <figure><figcaption>Requests/s per side</figcaption><div id="plot-split"></div></figure>
      <figure><figcaption>p99 latency per side (ms)</figcaption>
        <div id="plot-latency"></div></figure>
    </div>
  </section>
  <section id="flags">
    <h2>Flags</h2>
    <table><thead><tr><th>Flag</th><th>Mode</th><th>Percentage</th><th>Allow subjects</th>
      <th>Source</th><th></th></tr></thead><tbody id="flag-rows"></tbody></table>
  </section>
  <section id="rollouts">
    <h2>Rollouts</h2>
    <table><thead><tr><th>Route</th><th>Flag</th><th>Step</th><th>State</th>
      <th>Verdict / reason</th><th></th></tr></thead><tbody id="rollout-rows"></tbody></table>
    <div id="rollout-starts"></div>
  </section>
  <section id="routes">
    <h2>Route table <span class="muted">(last 5 minutes)</span></h2>
    <table><thead>
      <tr><th rowspan="2">Path</th><th rowspan="2">Methods</th><th rowspan="2">State</th>
        <th rowspan="2">Served by</th><th rowspan="2">Flag</th>
        <th colspan="4">Legacy</th><th colspan="4">New</th></tr>
      <tr><th>req/s</th><th>errors</th><th>p50</th><th>p99</th>
        <th>req/s</th><th>errors</th><th>p50</th><th>p99</th></tr>
    </thead><tbody id="route-rows"></tbody></table>
  </section>
  <section id="shadow">
    <h2>Shadow results</h2>
    <table><thead><tr><th>Route</th><th>Match</th><th>Mismatch</th><th>Noisy</th>
      <th>Candidate errors</th><th>Skipped</th></tr></thead><tbody id="shadow-rows"></tbody></table>
    <h3>Recent mismatches</h3>
    <div id="mismatches"></div>
  </section>
  <section id="resilience">
    <h2>Breakers and fallbacks</h2>
    <div id="breakers"></div>
    <div id="fallbacks"></div>
  </section>
</main>
</body>
</html>
"""
