#!/usr/bin/env python3
"""Draws docs/scaling.svg (calls per second and speed-up against threads) from criterion's
results of `cargo bench --bench batch`. No third-party packages: the SVG is written by hand.

    python3 benches/scaling.py [CRITERION_DIR] [OUT_SVG]
"""
import json
import os
import sys

criterion = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "criterion", "batch_48_calls_1min_8k", "threads")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join("docs", "scaling.svg")
CALLS = 48

points = []
for name in os.listdir(criterion):
    estimates = os.path.join(criterion, name, "new", "estimates.json")
    if name.isdigit() and os.path.exists(estimates):
        with open(estimates) as f:
            seconds = json.load(f)["median"]["point_estimate"] / 1e9
        points.append((int(name), CALLS / seconds))
points.sort()
if not points:
    sys.exit(f"no results under {criterion}: run `cargo bench --bench batch` first")

base = points[0][1]
width, height, pad = 560, 320, 56
max_threads = max(t for t, _ in points)
max_speedup = max(max_threads, max(r / base for _, r in points))
x = lambda t: pad + (t - 1) / max(max_threads - 1, 1) * (width - 2 * pad)
y = lambda s: height - pad - s / max_speedup * (height - 2 * pad)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
       f'<rect width="{width}" height="{height}" fill="white"/>',
       f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">callrec batch scaling: 48 one-minute 8 kHz calls</text>',
       f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
       f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
       f'<text x="{width / 2}" y="{height - 16}" text-anchor="middle">threads</text>',
       f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">speed-up over 1 thread</text>',
       f'<line x1="{x(1)}" y1="{y(1)}" x2="{x(max_threads)}" y2="{y(max_threads)}" stroke="#bbb" stroke-dasharray="4 4"/>']
for t, _ in points:
    svg.append(f'<text x="{x(t)}" y="{height - pad + 16}" text-anchor="middle">{t}</text>')
path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(r / base):.1f}" for i, (t, r) in enumerate(points))
svg.append(f'<path d="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
for t, r in points:
    svg.append(f'<circle cx="{x(t):.1f}" cy="{y(r / base):.1f}" r="4" fill="#1f77b4"/>')
    svg.append(f'<text x="{x(t) + 6:.1f}" y="{y(r / base) - 8:.1f}">{r / base:.2f}x ({r:.0f} calls/s)</text>')
svg.append("</svg>")
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    f.write("\n".join(svg) + "\n")
for t, r in points:
    print(f"{t:3d} threads: {r:8.1f} calls/s  {r / base:5.2f}x")
print(f"wrote {out}")
