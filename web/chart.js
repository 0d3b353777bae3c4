// A small live line chart drawn by hand on a <canvas>: the last few minutes of one figure.
// Colours come from CSS custom properties, so it follows the light or dark scheme.

/** Samples kept: five minutes of one sample a second. */
const CAPACITY = 300;

/** The smallest of 1, 2, 5 × 10^k that is at least `value`: a round top for the axis. */
function niceMax(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

const formatNumber = (n) => (Number.isInteger(n) ? n.toLocaleString() : n.toFixed(1));

/** Draws the samples pushed to it on `canvas`, newest on the right; `label` names the figure. */
export function createChart(canvas, { label, capacity = CAPACITY }) {
  const values = [];
  const context = canvas.getContext("2d");

  const draw = () => {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const style = getComputedStyle(canvas);
    const color = (name) => style.getPropertyValue(name).trim();
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);

    const top = niceMax(Math.max(1, ...values));
    const pad = { top: 14, bottom: 2 };
    const plotHeight = height - pad.top - pad.bottom;
    const y = (v) => pad.top + plotHeight * (1 - v / top);
    const step = width / (capacity - 1);
    const x = (i) => width - (values.length - 1 - i) * step;

    context.strokeStyle = color("--chart-grid");
    context.lineWidth = 1;
    context.beginPath();
    for (const v of [0, top / 2, top]) {
      context.moveTo(0, Math.round(y(v)) + 0.5);
      context.lineTo(width, Math.round(y(v)) + 0.5);
    }
    context.stroke();
    context.fillStyle = color("--chart-text");
    context.font = "11px system-ui, sans-serif";
    context.textBaseline = "top";
    context.fillText(`${formatNumber(top)}/s`, 2, 0);

    if (values.length < 2) return;
    context.beginPath();
    context.moveTo(x(0), y(values[0]));
    for (let i = 1; i < values.length; i++) context.lineTo(x(i), y(values[i]));
    context.strokeStyle = color("--chart-line");
    context.lineWidth = 1.5;
    context.stroke();
    context.lineTo(x(values.length - 1), y(0));
    context.lineTo(x(0), y(0));
    context.closePath();
    context.fillStyle = color("--chart-fill");
    context.fill();
  };

  new ResizeObserver(draw).observe(canvas);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);

  return {
    /** Adds the newest sample and redraws. */
    push(value) {
      values.push(value);
      if (values.length > capacity) values.shift();
      const peak = Math.max(...values);
      const minutes = Math.max(1, Math.round(values.length / 60));
      canvas.setAttribute(
        "aria-label",
        `${label}: ${formatNumber(value)} per second now, at most ${formatNumber(peak)} over the last ${minutes} min`,
      );
      draw();
    },
  };
}
