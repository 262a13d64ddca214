/**
 * The report's figure, drawn as SVG by hand (no plotting dependency): the accuracy matrix of each
 * continual method as a heatmap, and the A_t curves side by side with the joint-training accuracy as a
 * dashed reference line. `pngFromSvg` rasterises it with sharp for viewers without SVG support.
 */
import sharp from "sharp";
import { writeFileAtomic } from "../common/atomic_write.js";

export interface CurveSeries {
  readonly label: string;
  readonly values: readonly number[];
  readonly color: string;
}

export interface FigureInput {
  readonly heatmaps: readonly { readonly title: string; readonly matrix: readonly (readonly number[])[] }[];
  readonly curves: readonly CurveSeries[];
  readonly reference?: { readonly label: string; readonly value: number };
}

const FONT = `font-family="DejaVu Sans, Helvetica, Arial, sans-serif"`;

/** Viridis at five stops, linearly interpolated: perceptually ordered and readable in grey. */
const VIRIDIS: readonly [number, number, number][] = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

export function colorFor(percent: number): string {
  const x = (Math.min(100, Math.max(0, percent)) / 100) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `rgb(${c.join(",")})`;
}

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function heatmap(
  x0: number,
  y0: number,
  size: number,
  title: string,
  matrix: readonly (readonly number[])[],
): string {
  const T = matrix.length;
  const cell = size / T;
  const parts = [
    `<text x="${x0 + size / 2}" y="${y0 - 28}" text-anchor="middle" font-size="15" font-weight="bold" ${FONT}>${escapeXml(title)}</text>`,
  ];
  for (let t = 0; t < T; t++) {
    for (let s = 0; s < T; s++) {
      const x = x0 + s * cell;
      const y = y0 + t * cell;
      const v = matrix[t][s];
      if (v === undefined) {
        parts.push(
          `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="#f2f2f2" stroke="white"/>`,
        );
        continue;
      }
      const ink = v > 60 ? "black" : "white";
      parts.push(
        `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${colorFor(v)}" stroke="white"/>`,
        `<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" font-size="${Math.min(13, cell / 3.6)}" fill="${ink}" ${FONT}>${v.toFixed(1)}</text>`,
      );
    }
    parts.push(
      `<text x="${x0 - 8}" y="${y0 + (t + 0.5) * cell + 4}" text-anchor="end" font-size="12" ${FONT}>${t + 1}</text>`,
    );
    parts.push(
      `<text x="${x0 + (t + 0.5) * cell}" y="${y0 - 8}" text-anchor="middle" font-size="12" ${FONT}>${t + 1}</text>`,
    );
  }
  parts.push(
    `<text x="${x0 + size / 2}" y="${y0 + size + 22}" text-anchor="middle" font-size="12" ${FONT}>accuracy on task s's classes (%) — columns: s</text>`,
    `<text x="${x0 - 30}" y="${y0 + size / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 30} ${y0 + size / 2})" ${FONT}>after training task t</text>`,
  );
  return parts.join("\n");
}

function curves(x0: number, y0: number, w: number, h: number, input: FigureInput): string {
  const T = Math.max(...input.curves.map((c) => c.values.length));
  const all = [...input.curves.flatMap((c) => c.values), ...(input.reference ? [input.reference.value] : [])];
  const lo = Math.max(0, Math.floor((Math.min(...all) - 5) / 10) * 10);
  const hi = 100;
  const px = (t: number) => x0 + (T === 1 ? w / 2 : (t * w) / (T - 1));
  const py = (v: number) => y0 + h - ((v - lo) / (hi - lo)) * h;
  const parts = [
    `<text x="${x0 + w / 2}" y="${y0 - 28}" text-anchor="middle" font-size="15" font-weight="bold" ${FONT}>Class-incremental accuracy A_t</text>`,
    `<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#999"/>`,
  ];
  for (let v = lo; v <= hi; v += 10) {
    parts.push(
      `<line x1="${x0}" x2="${x0 + w}" y1="${py(v)}" y2="${py(v)}" stroke="#e5e5e5"/>`,
      `<text x="${x0 - 6}" y="${py(v) + 4}" text-anchor="end" font-size="11" ${FONT}>${v}</text>`,
    );
  }
  for (let t = 0; t < T; t++) {
    parts.push(
      `<text x="${px(t)}" y="${y0 + h + 16}" text-anchor="middle" font-size="11" ${FONT}>${t + 1}</text>`,
    );
  }
  parts.push(
    `<text x="${x0 + w / 2}" y="${y0 + h + 34}" text-anchor="middle" font-size="12" ${FONT}>tasks learned t</text>`,
    `<text x="${x0 - 36}" y="${y0 + h / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 - 36} ${y0 + h / 2})" ${FONT}>accuracy on all classes seen (%)</text>`,
  );
  const legend: [string, string, boolean][] = [];
  if (input.reference) {
    const y = py(input.reference.value);
    parts.push(
      `<line x1="${x0}" x2="${x0 + w}" y1="${y}" y2="${y}" stroke="#555" stroke-width="2" stroke-dasharray="7 5"/>`,
    );
    legend.push([`${input.reference.label} ${input.reference.value.toFixed(1)}`, "#555", true]);
  }
  for (const c of input.curves) {
    const pts = c.values.map((v, t) => `${px(t)},${py(v)}`).join(" ");
    parts.push(`<polyline points="${pts}" fill="none" stroke="${c.color}" stroke-width="2.5"/>`);
    for (const [t, v] of c.values.entries())
      parts.push(`<circle cx="${px(t)}" cy="${py(v)}" r="4" fill="${c.color}"/>`);
    legend.push([`${c.label} (final ${c.values[c.values.length - 1].toFixed(1)})`, c.color, false]);
  }
  legend.forEach(([label, color, dashed], i) => {
    const y = y0 + h + 56 + i * 18;
    parts.push(
      `<line x1="${x0}" x2="${x0 + 26}" y1="${y - 4}" y2="${y - 4}" stroke="${color}" stroke-width="${dashed ? 2 : 2.5}"${dashed ? ` stroke-dasharray="7 5"` : ""}/>`,
      `<text x="${x0 + 34}" y="${y}" font-size="12" ${FONT}>${escapeXml(label)}</text>`,
    );
  });
  return parts.join("\n");
}

/** The whole figure: one heatmap per continual method, then the curves. */
export function accuracyFigure(input: FigureInput): string {
  const size = 250;
  const gap = 90;
  const top = 70;
  const left = 60;
  const curveW = 330;
  const width = left + input.heatmaps.length * (size + gap) + curveW + 40;
  const height = top + size + 130;
  const parts = input.heatmaps.map((hm, i) =>
    heatmap(left + i * (size + gap), top, size, hm.title, hm.matrix),
  );
  parts.push(curves(left + input.heatmaps.length * (size + gap) + 10, top, curveW, size, input));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...parts,
    "</svg>",
  ].join("\n");
}

export async function pngFromSvg(svg: string, file: string): Promise<void> {
  await writeFileAtomic(file, await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer());
}
