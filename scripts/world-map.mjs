// Makes host-tools/pitap/src/web/assets/world.txt, the web UI's world map:
// one line per country, "ISO-3166-alpha-2 TAB name TAB SVG path", on an
// equirectangular 1000x500 canvas. The shapes are Natural Earth's 1:110m
// admin-0 countries (public domain) as the world-atlas package ships them
// (TopoJSON, ISO numeric ids); i18n-iso-countries maps the ids to alpha-2.
// Run once, the output is committed:
//   npm install --prefix /tmp/wm world-atlas@2 i18n-iso-countries@7
//   NODE_PATH=/tmp/wm/node_modules node scripts/world-map.mjs
import { createRequire } from "module";
import { writeFileSync } from "fs";

const require = createRequire(process.env.NODE_PATH + "/");
const topo = require("world-atlas/countries-110m.json");
const iso = require("i18n-iso-countries");

const [sx, sy] = topo.transform.scale;
const [tx, ty] = topo.transform.translate;
// Arcs: quantized and delta-encoded positions.
const arcs = topo.arcs.map((arc) => {
  let x = 0, y = 0;
  return arc.map(([dx, dy]) => {
    x += dx;
    y += dy;
    return [x * sx + tx, y * sy + ty];
  });
});
const project = ([lon, lat]) => [((lon + 180) / 360) * 1000, ((90 - lat) / 180) * 500];
const ring = (indices) => {
  const points = [];
  for (const i of indices) {
    const a = i >= 0 ? arcs[i] : arcs[~i].slice().reverse();
    points.push(...(points.length ? a.slice(1) : a));
  }
  return points;
};
const path = (rings) =>
  rings
    .map((r) => {
      const pts = ring(r).map(project);
      // Rings that cross the antimeridian would smear across the map: cut
      // the segment, start a new subpath.
      let d = "";
      let prev = null;
      for (const [x, y] of pts) {
        const jump = prev && Math.abs(x - prev[0]) > 500;
        d += (d === "" || jump ? "M" : "L") + x.toFixed(1) + "," + y.toFixed(1);
        prev = [x, y];
      }
      return d + "Z";
    })
    .join("");
const lines = [];
for (const g of topo.objects.countries.geometries) {
  const code = iso.numericToAlpha2(g.id);
  if (!code || !g.arcs) continue;
  const polys = g.type === "Polygon" ? [g.arcs] : g.arcs;
  const d = polys.map(path).join("");
  lines.push(`${code}\t${g.properties.name}\t${d}`);
}
lines.sort();
const header =
  "# Natural Earth 1:110m admin-0 countries (public domain), from world-atlas 2.0.2 (ISC);\n" +
  "# made by scripts/world-map.mjs: code TAB name TAB SVG path on 1000x500, equirectangular.\n";
writeFileSync(
  new URL("../host-tools/pitap/src/web/assets/world.txt", import.meta.url),
  header + lines.join("\n") + "\n",
);
console.log(`world.txt: ${lines.length} countries`);
